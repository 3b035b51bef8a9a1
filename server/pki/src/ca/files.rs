//! The CA directory: four PEM files, keys readable by the owner only.
//!
//! Files are created with `create_new` so that two processes (or an init racing an import)
//! cannot overwrite each other's CA, and a failed init removes what it wrote, so that a retry is
//! not blocked by half a CA.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::CaError;

pub(super) const ROOT_CERT: &str = "root.crt.pem";
pub(super) const ROOT_KEY: &str = "root.key.pem";
pub(super) const ISSUING_CERT: &str = "issuing.crt.pem";
pub(super) const ISSUING_KEY: &str = "issuing.key.pem";

const ALL: [&str; 4] = [ROOT_CERT, ROOT_KEY, ISSUING_CERT, ISSUING_KEY];

pub(super) const PUBLIC_MODE: u32 = 0o644;
pub(super) const SECRET_MODE: u32 = 0o600;

/// Fails with [`CaError::AlreadyExists`] if any CA file is present in `dir`.
pub(super) fn ensure_absent(dir: &Path) -> Result<(), CaError> {
    for name in ALL {
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(_) => return Err(CaError::AlreadyExists(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CaError::Io { path, source: e }),
        }
    }
    Ok(())
}

/// Writes each `(name, bytes, mode)` as a new file; on failure removes the files this call
/// created and returns the first error.
pub(super) fn write_all_new(dir: &Path, files: &[(&str, &[u8], u32)]) -> Result<(), CaError> {
    fs::create_dir_all(dir).map_err(|e| CaError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut written: Vec<PathBuf> = Vec::new();
    for (name, bytes, mode) in files {
        let path = dir.join(name);
        if let Err(e) = write_new(&path, bytes, *mode) {
            // Only remove what we created: a file that already existed made `write_new` fail
            // before touching it.
            if !matches!(e, CaError::AlreadyExists(_)) {
                written.push(path);
            }
            for p in &written {
                let _ = fs::remove_file(p);
            }
            return Err(e);
        }
        written.push(path);
    }
    // Make the new directory entries durable too, not just the file contents.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CaError::Io {
            path: dir.to_path_buf(),
            source: e,
        })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let io = |e: std::io::Error| CaError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        // The mode is applied at creation, so a key is never readable by others, not even for
        // the moment between create and chmod.
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CaError::AlreadyExists(path.to_path_buf())
            } else {
                io(e)
            }
        })?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

pub(super) fn read(dir: &Path, name: &str) -> Result<Vec<u8>, CaError> {
    let path = dir.join(name);
    fs::read(&path).map_err(|e| CaError::Io { path, source: e })
}

/// Logs a warning if a key file is readable by group or others (someone copied it around or
/// the umask of an older tool applied). Not fatal: refusing to start would not protect a key
/// that has already been exposed.
pub(super) fn warn_if_exposed(dir: &Path, name: &str) {
    let path = dir.join(name);
    if let Ok(meta) = fs::metadata(&path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "CA private key is accessible to group or others; chmod 600 it"
        );
    }
}
