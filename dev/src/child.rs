//! `zfvis serve` as a child process on a free loopback port. `zfvis-dev fuzz`
//! and `soak` start the server this way, and so do the integration
//! tests (through `tests/common`).

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running server; killed on drop.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Server {
    /// `exe serve` on CPU with the `models` and `data` folders and `extra`
    /// arguments, logging at `log`; waits until it listens. Every later
    /// line of its stderr is given to `each_line` (the pipe is drained so
    /// that the server never blocks on it).
    pub fn start(
        exe: &Path,
        models: &Path,
        data: &Path,
        extra: &[&str],
        log: &str,
        mut each_line: impl FnMut(&str) + Send + 'static,
    ) -> std::io::Result<Server> {
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--device",
                "cpu",
                "--models",
            ])
            .arg(models)
            .arg("--data")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = std::io::BufReader::new(stderr).lines();
        let mut said = vec![];
        let base = loop {
            match lines.next() {
                Some(Ok(l)) => match l.find("http://") {
                    Some(i) => break l[i..].trim().to_string(),
                    None => said.push(l),
                },
                _ => {
                    let _ = child.wait();
                    return Err(std::io::Error::other(format!(
                        "zfvis serve exited before listening: {}",
                        said.join(" | ")
                    )));
                }
            }
        };
        std::thread::spawn(move || {
            for l in lines.map_while(|l| l.ok()) {
                each_line(&l);
            }
        });
        Ok(Server { child, base })
    }

    /// Kill the server and wait for its end (again on drop: a no-op).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
