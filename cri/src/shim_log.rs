//! The `log` FIFO of a containerd shim v2. Such a shim opens `log` in the
//! bundle it was started in for writing (its own log, as its stderr)
//! before it serves, and blocks there until the FIFO has a reader; a shim
//! whose reader goes away dies of SIGPIPE at its next log line. The daemon
//! is that reader, as containerd is: it opens the FIFO before `start`,
//! passes the shim's lines into its own log, and opens it again after a
//! restart ([`resume`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::net::unix::pipe;

/// How often a drain looks whether its shim is gone (its socket removed:
/// the shim removes it on exit, teardown for a killed shim).
const CHECK_EVERY: Duration = Duration::from_secs(10);

/// The longest shim log line passed on whole.
const MAX_LINE: usize = 16 << 10;

/// The FIFO's path in a bundle.
pub fn path(bundle: &Path) -> PathBuf {
    bundle.join("log")
}

/// Makes the bundle's `log` FIFO (mode 0600) if missing and opens it
/// read-write: the shim's open for writing then never blocks, and the
/// reader never sees end-of-file between writers.
pub fn open(bundle: &Path) -> std::io::Result<pipe::Receiver> {
    let p = path(bundle);
    match nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    pipe::OpenOptions::new().read_write(true).open_receiver(&p)
}

/// Passes the shim's log lines into the daemon's log until the shim at
/// `address` is gone.
pub fn drain(rx: pipe::Receiver, id: &str, address: &str) {
    let id = id.to_string();
    let socket = PathBuf::from(address.strip_prefix("unix://").unwrap_or(address));
    let address = address.to_string();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(rx);
        let mut line = Vec::new();
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                r = read_line(&mut lines, &mut line) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line);
                        tracing::debug!(shim = %id, "{}", text.trim_end());
                        line.clear();
                    }
                },
                _ = tick.tick() => {
                    if !socket.exists() {
                        crate::task_api::forget(&address);
                        return;
                    }
                }
            }
        }
    });
}

/// One line, at most [`MAX_LINE`] bytes of it (the rest comes as the
/// next line), so a shim cannot make the daemon buffer without bound.
async fn read_line(
    r: &mut tokio::io::BufReader<pipe::Receiver>,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(line.len());
        }
        let room = MAX_LINE - line.len();
        let take = buf.len().min(room);
        let (n, done) = match buf[..take].iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (take, take == room),
        };
        line.extend_from_slice(&buf[..n]);
        r.consume(n);
        if done {
            return Ok(line.len());
        }
    }
}

/// After a daemon restart: reads the log of the live shim v2 at
/// `address` again, from the bundle it was started in.
pub fn resume(bundle: &Path, id: &str, address: &str) {
    if !path(bundle).exists() {
        return;
    }
    match open(bundle) {
        Ok(rx) => drain(rx, id, address),
        Err(e) => tracing::warn!(shim = %id, error = %e, "reopen shim log FIFO"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_short_ones_kept_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let rx = open(dir.path()).expect("open");
        let tx = pipe::OpenOptions::new()
            .open_sender(path(dir.path()))
            .expect("writer");
        let mut long = vec![b'x'; MAX_LINE + 10];
        long.push(b'\n');
        let mut data = b"first\n".to_vec();
        data.extend_from_slice(&long);
        let w = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut tx = tx;
            tx.write_all(&data).await.expect("write");
        });
        let mut r = tokio::io::BufReader::new(rx);
        let mut line = Vec::new();
        let mut got = Vec::new();
        for _ in 0..3 {
            read_line(&mut r, &mut line).await.expect("read");
            got.push(line.len());
            line.clear();
        }
        w.await.expect("writer");
        assert_eq!(got, vec![6, MAX_LINE, 11]);
    }
}
