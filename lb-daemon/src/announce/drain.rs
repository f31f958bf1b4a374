//! The node's drain flag (`lbctl node drain`), kept as a file of its own in
//! the state directory: a drained node stays drained across restarts until
//! it is undrained, and the VIP state file is not touched by it.

use std::path::{Path, PathBuf};

/// The flag's file name in the state directory.
pub const FILE: &str = "node-drained";

/// Where the flag lives.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Whether the node is drained.
pub fn load(path: &Path) -> bool {
    path.exists()
}

/// Records the flag (the file exists exactly while drained).
pub fn store(path: &Path, drained: bool) -> std::io::Result<()> {
    if drained {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(
            path,
            "drained by lbctl node drain; lbctl node undrain removes this\n",
        )
    } else {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
