//! Writing one rendered file, never half of it:
//!
//! 1. if the bytes, owner and mode already equal the destination's, stop (no write, no reload);
//! 2. write a stage file in the destination's directory (same filesystem, so the rename is
//!    atomic);
//! 3. run `check_cmd` on it — non-zero: keep the old destination, log the command's output,
//!    remove the stage file;
//! 4. set owner and mode, fsync, rename over the destination, fsync the directory;
//! 5. the caller runs `reload_cmd` (once per pass for resources that share it).
//!
//! `noop` prints a diff instead and writes nothing; `sync_only` writes without check or reload.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exec;

/// Where and how one file is written.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub dest: PathBuf,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub mode: Option<u32>,
    pub check_cmd: Option<String>,
    pub check_timeout: Duration,
}

impl Target {
    pub fn from_resource(r: &crate::resource::Resource) -> Target {
        Target {
            dest: r.dest.clone(),
            uid: r.uid,
            gid: r.gid,
            mode: r.mode,
            check_cmd: r.check_cmd.clone(),
            check_timeout: r.check_timeout,
        }
    }
}

/// Global switches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub noop: bool,
    pub sync_only: bool,
    pub keep_stage_file: bool,
}

/// What happened to the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// It already had these bytes, owner and mode.
    Unchanged,
    /// `-noop`: it would change; this is the diff that was printed.
    WouldChange(String),
    /// It was replaced.
    Replaced,
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("check_cmd `{command}` failed ({status}); {dest} is unchanged{}", output_suffix(.output))]
    CheckFailed {
        command: String,
        status: String,
        output: String,
        dest: String,
    },
    #[error("{0}")]
    Io(String),
}

fn output_suffix(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("; its output:\n{output}")
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> WriteError {
    WriteError::Io(format!("{what} {}: {e}", path.display()))
}

/// The owner and mode the destination should have: the resource's, else (for the mode) the
/// existing file's, else 0644; the owner defaults to this process's user and group.
fn desired_meta(target: &Target, existing: Option<&std::fs::Metadata>) -> (u32, u32, u32) {
    let uid = target
        .uid
        .unwrap_or_else(|| nix::unistd::geteuid().as_raw());
    let gid = target
        .gid
        .unwrap_or_else(|| nix::unistd::getegid().as_raw());
    let mode = target
        .mode
        .or_else(|| existing.map(|m| m.mode() & 0o7777))
        .unwrap_or(0o644);
    (uid, gid, mode)
}

/// Writes `content` to `target.dest` through the stage-check-rename pipeline.
pub async fn write(target: &Target, content: &[u8], opts: Options) -> Result<Written, WriteError> {
    let dest = &target.dest;
    let existing_meta = std::fs::metadata(dest).ok();
    let (uid, gid, mode) = desired_meta(target, existing_meta.as_ref());
    let existing = match &existing_meta {
        Some(_) => Some(std::fs::read(dest).map_err(|e| io("reading", dest, e))?),
        None => None,
    };
    if let (Some(old), Some(meta)) = (&existing, &existing_meta) {
        let same_meta = meta.uid() == uid && meta.gid() == gid && meta.mode() & 0o7777 == mode;
        if old.as_slice() == content && same_meta {
            return Ok(Written::Unchanged);
        }
    }

    if opts.noop {
        let diff = diff(
            dest,
            existing.as_deref(),
            content,
            existing_meta.as_ref(),
            (uid, gid, mode),
        );
        return Ok(Written::WouldChange(diff));
    }

    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut stage = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".stage")
        .tempfile_in(&dir)
        .map_err(|e| io("creating a stage file in", &dir, e))?;
    stage
        .write_all(content)
        .and_then(|_| stage.flush())
        .map_err(|e| io("writing", stage.path(), e))?;

    if !opts.sync_only {
        if let Some(check) = &target.check_cmd {
            let command = exec::substitute_src(check, stage.path());
            let result = exec::run(&command, target.check_timeout)
                .await
                .map_err(|e| WriteError::Io(format!("running check_cmd `{command}`: {e}")))?;
            if !result.success() {
                if opts.keep_stage_file {
                    let _ = stage.keep();
                }
                return Err(WriteError::CheckFailed {
                    command,
                    status: result.describe(),
                    output: result.output,
                    dest: dest.display().to_string(),
                });
            }
        }
    }

    let file: &File = stage.as_file();
    let current = file.metadata().map_err(|e| io("stat", stage.path(), e))?;
    if current.uid() != uid || current.gid() != gid {
        nix::unistd::fchown(
            file,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| {
            WriteError::Io(format!(
                "setting owner {uid}:{gid} on {}: {e}",
                stage.path().display()
            ))
        })?;
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("setting the mode of", stage.path(), e))?;
    file.sync_all().map_err(|e| io("fsync", stage.path(), e))?;
    stage
        .persist(dest)
        .map_err(|e| io("renaming the stage file over", dest, e.error))?;
    if let Ok(d) = File::open(&dir) {
        d.sync_all().map_err(|e| io("fsync", &dir, e))?;
    }
    Ok(Written::Replaced)
}

/// A unified diff of the destination and the new content (with owner/mode changes noted).
pub fn diff(
    dest: &Path,
    old: Option<&[u8]>,
    new: &[u8],
    old_meta: Option<&std::fs::Metadata>,
    (uid, gid, mode): (u32, u32, u32),
) -> String {
    let old_text = old.map(String::from_utf8_lossy).unwrap_or_default();
    let new_text = String::from_utf8_lossy(new);
    let name = dest.display().to_string();
    let mut out = similar::TextDiff::from_lines(old_text.as_ref(), new_text.as_ref())
        .unified_diff()
        .header(
            &if old.is_some() {
                name.clone()
            } else {
                "/dev/null".to_string()
            },
            &name,
        )
        .to_string();
    match old_meta {
        Some(m) if m.uid() != uid || m.gid() != gid || m.mode() & 0o7777 != mode => {
            out.push_str(&format!(
                "# {name}: owner {}:{} mode {:04o} -> owner {uid}:{gid} mode {mode:04o}\n",
                m.uid(),
                m.gid(),
                m.mode() & 0o7777
            ));
        }
        None => out.push_str(&format!(
            "# {name}: new file, owner {uid}:{gid} mode {mode:04o}\n"
        )),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(dir: &Path) -> Target {
        Target {
            dest: dir.join("app.conf"),
            check_timeout: Duration::from_secs(10),
            ..Default::default()
        }
    }

    fn stage_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".stage"))
            .collect()
    }

    #[tokio::test]
    async fn writes_then_identical_output_is_no_write() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        let o = Options::default();
        assert_eq!(write(&t, b"a\n", o).await.unwrap(), Written::Replaced);
        assert_eq!(std::fs::read(&t.dest).unwrap(), b"a\n");
        let inode = std::fs::metadata(&t.dest).unwrap().ino();
        assert_eq!(write(&t, b"a\n", o).await.unwrap(), Written::Unchanged);
        assert_eq!(
            std::fs::metadata(&t.dest).unwrap().ino(),
            inode,
            "not rewritten"
        );
        assert_eq!(write(&t, b"b\n", o).await.unwrap(), Written::Replaced);
        assert_ne!(
            std::fs::metadata(&t.dest).unwrap().ino(),
            inode,
            "renamed over"
        );
        assert!(stage_files(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_failing_check_keeps_the_old_file_and_removes_the_stage() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = target(dir.path());
        std::fs::write(&t.dest, "old\n").unwrap();
        t.check_cmd =
            Some("grep -q good {{src}} || { echo 'bad config in' {{src}}; exit 1; }".into());
        let err = write(&t, b"bad\n", Options::default()).await.unwrap_err();
        match &err {
            WriteError::CheckFailed { output, status, .. } => {
                assert!(output.contains("bad config in"), "{output}");
                assert_eq!(status, "exit 1");
            }
            other => panic!("{other}"),
        }
        assert_eq!(std::fs::read_to_string(&t.dest).unwrap(), "old\n");
        assert!(stage_files(dir.path()).is_empty());
        // The check sees the staged file, so good content passes.
        assert_eq!(
            write(&t, b"good\n", Options::default()).await.unwrap(),
            Written::Replaced
        );
        assert_eq!(std::fs::read_to_string(&t.dest).unwrap(), "good\n");
    }

    #[tokio::test]
    async fn keep_stage_file_keeps_a_rejected_stage() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = target(dir.path());
        t.check_cmd = Some("false".into());
        let o = Options {
            keep_stage_file: true,
            ..Default::default()
        };
        assert!(write(&t, b"x", o).await.is_err());
        assert_eq!(stage_files(dir.path()).len(), 1);
        assert!(!t.dest.exists());
    }

    #[tokio::test]
    async fn sync_only_skips_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = target(dir.path());
        t.check_cmd = Some("false".into());
        let o = Options {
            sync_only: true,
            ..Default::default()
        };
        assert_eq!(write(&t, b"x", o).await.unwrap(), Written::Replaced);
    }

    #[tokio::test]
    async fn mode_and_owner_are_applied_and_compared() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = target(dir.path());
        t.mode = Some(0o600);
        write(&t, b"x", Options::default()).await.unwrap();
        let meta = std::fs::metadata(&t.dest).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
        // Same bytes, different mode: rewritten with the new mode.
        t.mode = Some(0o640);
        assert_eq!(
            write(&t, b"x", Options::default()).await.unwrap(),
            Written::Replaced
        );
        assert_eq!(std::fs::metadata(&t.dest).unwrap().mode() & 0o7777, 0o640);
        // Without a mode the existing one is kept.
        t.mode = None;
        assert_eq!(
            write(&t, b"y", Options::default()).await.unwrap(),
            Written::Replaced
        );
        assert_eq!(std::fs::metadata(&t.dest).unwrap().mode() & 0o7777, 0o640);
        // An owner this process can set (itself, or any as root).
        let me = nix::unistd::geteuid().as_raw();
        let other = if me == 0 { 65534 } else { me };
        t.uid = Some(other);
        t.gid = Some(if me == 0 {
            65534
        } else {
            nix::unistd::getegid().as_raw()
        });
        write(&t, b"z", Options::default()).await.unwrap();
        assert_eq!(std::fs::metadata(&t.dest).unwrap().uid(), other);
        assert_eq!(
            write(&t, b"z", Options::default()).await.unwrap(),
            Written::Unchanged
        );
    }

    #[tokio::test]
    async fn noop_prints_a_diff_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(dir.path());
        std::fs::write(&t.dest, "a\nb\n").unwrap();
        std::fs::set_permissions(&t.dest, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = Options {
            noop: true,
            ..Default::default()
        };
        match write(&t, b"a\nc\n", o).await.unwrap() {
            Written::WouldChange(d) => {
                assert!(d.contains("-b\n") && d.contains("+c\n"), "{d}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&t.dest).unwrap(), "a\nb\n");
        assert!(stage_files(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target {
            dest: dir.path().join("no/such/dir/x.conf"),
            ..Default::default()
        };
        let err = write(&t, b"x", Options::default()).await.unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
