//! Embeds `migrations/*.sql` into the binary, so the image needs no migration files.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new("migrations");
    println!("cargo::rerun-if-changed=migrations");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("api/migrations exists")
        .map(|entry| {
            entry
                .expect("readable directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 file name")
        })
        .filter(|name| name.ends_with(".sql"))
        .collect();
    names.sort();
    let mut code = String::from(
        "/// `(file name, contents)` of every embedded migration file.\npub(crate) const EMBEDDED: &[(&str, &str)] = &[\n",
    );
    for name in &names {
        let path = std::fs::canonicalize(dir.join(name)).expect("migration path");
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("migrations.rs");
    std::fs::write(out, code).expect("write migrations.rs");
}
