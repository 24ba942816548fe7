//! CPU time, read from `/proc`: the figure that does not move with this VM's speed. The bench
//! process's own (fluxgate with the in-process load generator and receivers: they share the
//! runtime, so they cannot be told apart) and Postgres's (every `postgres` process, plus what
//! the postmaster's exited children used).
use std::time::Duration;

/// CPU used so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub own: Duration,
    pub postgres: Duration,
}

/// Clock ticks per second of `/proc/*/stat` (USER_HZ, 100 on Linux everywhere that matters).
const TICKS: u64 = 100;

impl Cpu {
    pub fn now() -> Cpu {
        let own = ticks("/proc/self/stat", false).unwrap_or(0);
        let mut postgres = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let path = entry.path().join("stat");
            if let Some(t) = postgres_ticks(&path) {
                postgres += t;
            }
        }
        Cpu {
            own: Duration::from_millis(own * 1000 / TICKS),
            postgres: Duration::from_millis(postgres * 1000 / TICKS),
        }
    }

    /// Microseconds per unit since `before`: (own, postgres).
    pub fn per_unit_since(before: Cpu, units: u64) -> (f64, f64) {
        let now = Cpu::now();
        let per = |a: Duration, b: Duration| {
            a.saturating_sub(b).as_secs_f64() * 1e6 / units.max(1) as f64
        };
        (per(now.own, before.own), per(now.postgres, before.postgres))
    }
}

/// utime + stime of a process (and, with `children`, of its reaped children).
fn ticks(path: impl AsRef<std::path::Path>, children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name is in parentheses and may hold spaces: fields follow the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n).and_then(|f| f.parse::<u64>().ok());
    // After the name: state is field 0; utime, stime, cutime, cstime are 11..=14.
    let mut t = field(11)? + field(12)?;
    if children {
        t += field(13)? + field(14)?;
    }
    Some(t)
}

fn postgres_ticks(path: &std::path::Path) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let name = stat.split_once('(')?.1.rsplit_once(')')?.0;
    if name != "postgres" {
        return None;
    }
    // The postmaster (its parent is not postgres) also carries its exited backends' time.
    let ppid: u32 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let parent = std::fs::read_to_string(format!("/proc/{ppid}/stat")).unwrap_or_default();
    let is_postmaster = !parent.contains("(postgres)");
    ticks(path, is_postmaster)
}
