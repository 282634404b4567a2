//! Output that outlives its reader. Rust's `println!`/`eprintln!` (used by logging layers and
//! by component crates) panic when a write fails, so a runtime whose stdout is a pipe nobody
//! reads any more (its worker died) would die on its next log line. [`guard`] puts a pipe of
//! its own behind fds 1 and 2 and copies it to the original destinations from a thread; when
//! a destination fails, its output is dropped instead, and the process carries on.
//! [`Guard::finish`] puts the original descriptors back and waits until everything written
//! has been copied, so no last line is lost at exit.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::unistd::{dup, dup2_stderr, dup2_stdout, pipe};

/// The copying threads and the original descriptors.
pub struct Guard {
    streams: Vec<(Stream, OwnedFd, JoinHandle<()>)>,
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

impl Stream {
    fn redirect(self, fd: impl AsFd) -> nix::Result<()> {
        match self {
            Stream::Out => dup2_stdout(fd),
            Stream::Err => dup2_stderr(fd),
        }
    }
}

/// Guards stdout and stderr. On failure (no descriptors left) the process keeps its
/// original streams.
pub fn guard() -> std::io::Result<Guard> {
    let mut streams = Vec::new();
    for (stream, original) in [
        (Stream::Out, dup(std::io::stdout())?),
        (Stream::Err, dup(std::io::stderr())?),
    ] {
        let (read, write) = pipe()?;
        let sink = File::from(original.try_clone()?);
        let copier = std::thread::Builder::new()
            .name("output-guard".into())
            .spawn(move || copy(File::from(read), sink))?;
        stream.redirect(&write)?;
        drop(write);
        streams.push((stream, original, copier));
    }
    Ok(Guard { streams })
}

impl Guard {
    /// Restores the original descriptors and waits (at most 2 s) until the copies are done.
    pub fn finish(self) {
        let _ = std::io::stdout().flush();
        for (stream, original, copier) in self.streams {
            // Replacing fd 1/2 closes the last write end of the pipe: the copier reads to EOF.
            let _ = stream.redirect(&original);
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while !copier.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if copier.is_finished() {
                let _ = copier.join();
            }
        }
    }
}

/// Copies until the pipe closes. After the first failed write, output is read and dropped.
fn copy(mut from: File, mut to: File) {
    let mut buf = [0u8; 8192];
    let mut broken = false;
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) if !broken => broken = to.write_all(&buf[..n]).is_err(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
