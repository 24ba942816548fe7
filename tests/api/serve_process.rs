//! The real binary as an operator runs it: `fluxgate serve` as a child process, configured only
//! by environment variables, on a free loopback port. Dropping it kills the child, so a failing
//! test leaves no server behind.
use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct ServeProcess {
    child: Child,
    env: Vec<(String, String)>,
    pub base: String,
}

/// A free loopback port for a child to bind (released before the child binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServeProcess {
    /// Starts `fluxgate serve` with exactly `env` (plus PATH) and waits until `/readyz` answers.
    /// `PORT` must be in `env`; its log goes to `log_name` in the temp directory.
    pub async fn start(env: Vec<(String, String)>, log_name: &str) -> ServeProcess {
        let port = env
            .iter()
            .find(|(k, _)| k == "PORT")
            .map(|(_, v)| v.clone())
            .expect("PORT is set");
        let log = std::env::temp_dir().join(log_name);
        let mut serve = ServeProcess {
            child: spawn(&env, &log),
            env,
            base: format!("http://127.0.0.1:{port}"),
        };
        serve.wait_ready().await;
        serve
    }

    /// Sends `signal` as the operator's platform would, and waits for the exit.
    pub fn stop(&mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
        self.child.wait().unwrap()
    }

    /// Starts the same command again (after `stop`), on the same port and database.
    pub async fn restart(&mut self, log_name: &str) {
        self.child = spawn(&self.env, &std::env::temp_dir().join(log_name));
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("fluxgate serve exited with {status} before it was ready");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "fluxgate serve never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(env: &[(String, String)], log: &std::path::Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fluxgate"));
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .map(Stdio::from)
                .unwrap_or(Stdio::null()),
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn fluxgate serve")
}
