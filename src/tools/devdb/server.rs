//! The `postgres` child process: spawned so it cannot outlive us, supervised by a thread of its
//! own, probed for readiness over its unix socket, and shut down politely.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often the supervisor checks whether the child has exited.
const POLL: Duration = Duration::from_millis(10);

/// A child process owned by a dedicated thread. Only that thread reaps the child, and it also
/// delivers our signals, so a signal can never hit a recycled pid.
pub(crate) struct Supervised {
    pid: u32,
    signals: Option<mpsc::Sender<Signal>>,
    exit: Arc<(Mutex<Option<String>>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Supervised {
    /// Spawns `cmd` (see [`tie_to_this_thread`]) from a dedicated thread that then waits on it.
    pub fn spawn(mut cmd: Command) -> io::Result<Self> {
        tie_to_this_thread(&mut cmd);
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (signals, signal_rx) = mpsc::channel::<Signal>();
        let exit = Arc::new((Mutex::new(None), Condvar::new()));
        let exit_in_thread = Arc::clone(&exit);
        let thread = std::thread::Builder::new()
            .name("fluxgate-postgres".into())
            .spawn(move || {
                let mut child = match cmd.spawn() {
                    Ok(child) => child,
                    Err(e) => return drop(spawned_tx.send(Err(e))),
                };
                let _ = spawned_tx.send(Ok(child.id()));
                let pid = Pid::from_raw(child.id() as i32);
                let status = loop {
                    match signal_rx.recv_timeout(POLL) {
                        Ok(signal) => drop(kill(pid, signal)),
                        Err(RecvTimeoutError::Timeout) => {}
                        // The owner was dropped without stopping us (say it lives in a static):
                        // keep supervising until the process exits.
                        Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
                    }
                    match child.try_wait() {
                        Ok(Some(status)) => break status.to_string(),
                        Ok(None) => {}
                        Err(e) => break format!("could not be waited for: {e}"),
                    }
                };
                let (lock, cvar) = &*exit_in_thread;
                *lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
                cvar.notify_all();
            })?;
        let pid = spawned_rx
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("the supervisor thread died")))?;
        Ok(Self {
            pid,
            signals: Some(signals),
            exit,
            thread: Some(thread),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How the child exited, if it has.
    pub fn exit_status(&self) -> Option<String> {
        self.exit
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn signal(&self, signal: Signal) {
        if let Some(tx) = &self.signals {
            let _ = tx.send(signal);
        }
    }

    /// Waits up to `timeout` for the child to exit; true if it has.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        let (lock, cvar) = &*self.exit;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = cvar
            .wait_timeout_while(guard, timeout, |status| status.is_none())
            .unwrap_or_else(|p| p.into_inner());
        guard.is_some()
    }

    /// Fast shutdown (SIGINT: roll back sessions, checkpoint, exit); escalates to SIGQUIT and
    /// then SIGKILL if Postgres does not go. Returns how it went, or why it would not stop.
    pub fn shutdown(&mut self, patience: Duration) -> Result<(), String> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let mut outcome = Ok(());
        for (signal, wait) in [
            (Signal::SIGINT, patience),
            (Signal::SIGQUIT, Duration::from_secs(5)),
            (Signal::SIGKILL, Duration::from_secs(5)),
        ] {
            if self.exit_status().is_some() {
                break;
            }
            self.signal(signal);
            if self.wait_exit(wait) {
                break;
            }
            outcome = Err(format!(
                "Postgres (pid {}) ignored {signal} for {wait:?}",
                self.pid
            ));
        }
        self.signals = None;
        if self.exit_status().is_some() {
            let _ = thread.join();
        }
        outcome
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.shutdown(Duration::from_secs(30));
    }
}

/// Puts the child in its own process group (the terminal's Ctrl-C is for fluxgate, which then
/// stops the child itself after draining) and gives it a parent-death signal of SIGINT —
/// Postgres's "fast shutdown" — so it goes away even if we are SIGKILLed.
///
/// Linux sends the parent-death signal when the *thread* that forked exits, so the spawning
/// thread must live as long as the child: a dedicated one, never a runtime's blocking pool.
pub(crate) fn tie_to_this_thread(cmd: &mut Command) {
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe system calls and the closure allocates
        // nothing. std runs pre_exec after setgid/setuid, which matters: changing credentials
        // clears the parent-death signal, so it must be set afterwards (a test checks this).
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGINT)?;
                // If we died between fork and prctl, no signal will ever come: give up now.
                if nix::unistd::getppid().as_raw() as u32 != parent {
                    return Err(io::Error::other("the parent process exited"));
                }
                Ok(())
            });
        }
    }
}

/// What one connection attempt learned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Probe {
    Ready,
    NotYet,
    /// The server answered with an error that waiting will not fix.
    Refused(String),
}

/// Speaks just enough of the wire protocol to learn whether `user` can open `database` — the
/// same question our callers' first query asks, without needing an async runtime here.
pub(crate) fn probe(socket: &Path, user: &str, database: &str) -> Probe {
    match try_probe(socket, user, database) {
        Ok(probe) => probe,
        // Not listening yet, or hung up on us while starting.
        Err(_) => Probe::NotYet,
    }
}

fn try_probe(socket: &Path, user: &str, database: &str) -> io::Result<Probe> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut body = 196_608_u32.to_be_bytes().to_vec(); // protocol 3.0
    for (key, value) in [("user", user), ("database", database)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = u32::try_from(body.len() + 4)
        .map_err(io::Error::other)?
        .to_be_bytes()
        .to_vec();
    message.extend_from_slice(&body);
    stream.write_all(&message)?;

    let mut header = [0_u8; 5];
    stream.read_exact(&mut header)?;
    match header[0] {
        b'R' => {
            // AuthenticationOk (trust) or a password request: either way it is up. Say goodbye.
            let _ = stream.write_all(&[b'X', 0, 0, 0, 4]);
            Ok(Probe::Ready)
        }
        b'E' => {
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let mut fields = vec![0_u8; len.saturating_sub(4).min(64 * 1024)];
            stream.read_exact(&mut fields)?;
            let field = |code: u8| {
                fields
                    .split(|b| *b == 0)
                    .find(|f| f.first() == Some(&code))
                    .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
                    .unwrap_or_default()
            };
            // 57P03 cannot_connect_now: starting up, shutting down, or in recovery.
            if field(b'C') == "57P03" {
                Ok(Probe::NotYet)
            } else {
                Ok(Probe::Refused(field(b'M')))
            }
        }
        other => Ok(Probe::Refused(format!(
            "unexpected reply {:?} to a startup message",
            other as char
        ))),
    }
}

/// Waits until the server accepts `user` on `database`, the child exits, or `timeout` passes.
///
/// Until the postmaster marks itself ready in `postmaster.pid` (as `pg_ctl -w` checks) we only
/// read that file: every refused connection attempt would put a FATAL line in the log and bury
/// the line that explains a real failure. Then one real connection confirms it.
pub(crate) fn wait_ready(
    child: &Supervised,
    data_dir: &Path,
    socket: &Path,
    user: &str,
    database: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let pid_file = data_dir.join("postmaster.pid");
    loop {
        if let Some(status) = child.exit_status() {
            return Err(format!("it exited during start-up with {status}"));
        }
        if says_ready(&pid_file, child.pid()) {
            match probe(socket, user, database) {
                Probe::Ready => return Ok(()),
                Probe::Refused(message) => {
                    return Err(format!("it refused a connection: {message}"))
                }
                Probe::NotYet => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "it did not accept connections within {}s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Line 1 of `postmaster.pid` is the postmaster's pid (a crashed predecessor's file names
/// another, and may say "ready" too); line 8 its status.
fn says_ready(pid_file: &Path, pid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(pid_file) else {
        return false;
    };
    let lines: Vec<&str> = text.lines().collect();
    lines.first().map(|l| l.trim()) == Some(pid.to_string().as_str())
        && lines.get(7).map(|l| l.trim()) == Some("ready")
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// The claim the design rests on: when the thread that spawned the child ends (as every
    /// thread does when our process is killed), the child gets SIGINT — even after a uid switch.
    #[test]
    fn a_tied_child_gets_sigint_when_its_spawning_thread_ends() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        if nix::unistd::geteuid().is_root() {
            let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
            cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
        }
        tie_to_this_thread(&mut cmd);
        let mut child = std::thread::spawn(move || cmd.spawn().unwrap())
            .join()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("the child outlived the thread that spawned it");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.signal(), Some(Signal::SIGINT as i32));
    }
}
