// `sqlx::migrate!` embeds migrations/ at compile time, and the console's files are embedded
// too (`src/api/console`): rebuild when either changes. The console's table of files is
// generated here from its directory, so a file added there is served without a list to edit.
use std::{env, fs, path::Path};

const CONSOLE: &str = "src/api/console/assets";

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed={CONSOLE}");
    let mut files = Vec::new();
    collect(Path::new(CONSOLE), &mut files);
    files.sort();
    let mut table = String::from("&[\n");
    for path in &files {
        let rel = path
            .strip_prefix(CONSOLE)
            .expect("under the console directory")
            .to_string_lossy()
            .replace('\\', "/");
        let abs = fs::canonicalize(path).expect("console file");
        table.push_str(&format!(
            "    ({rel:?}, include_bytes!({:?}) as &[u8]),\n",
            abs.to_string_lossy()
        ));
    }
    table.push(']');
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("console_files.rs");
    fs::write(out, table).expect("writing the console's table");
}

fn collect(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        println!("cargo:rerun-if-changed={}", path.display());
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
