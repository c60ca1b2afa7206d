//! Writes the seed inputs of every fuzz target to `fuzz/seeds/<target>/`
//! (see `valori_fuzz_targets::seeds`). Run after a format change:
//!
//! ```sh
//! cargo run -p valori-fuzz-targets --example write_seeds
//! ```

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../seeds");
    for (target, name, bytes) in valori_fuzz_targets::seeds::generate() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(&name), &bytes)?;
        println!("{target}/{name}: {} bytes", bytes.len());
    }
    Ok(())
}
