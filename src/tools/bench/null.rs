//! `--system null`: a `gavel null-server` process, which answers every bid
//! SUCCESS with no work, started on the client port for the same workload.
//! It runs in its own process, as a node does, so that it shares neither a
//! runtime nor an allocator with the load generator.

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow};

use crate::client::node_status;
use crate::tools::cluster::poll_until;
use crate::transport::Network;

use super::BenchArgs;

/// How long the server may take to answer its first status probe.
const START_DEADLINE: Duration = Duration::from_secs(15);
const PROBE: Duration = Duration::from_millis(200);

/// The null server process, killed (SIGKILL) on drop.
pub(crate) struct NullServer {
    child: Child,
    port: u16,
}

impl NullServer {
    /// Starts it on `--client-port` with `--server-threads`, and waits until it answers.
    pub async fn start(args: &BenchArgs) -> anyhow::Result<Self> {
        let binary = std::env::current_exe().context("finding the gavel binary")?;
        let port = args.client_port;
        let stderr = match &args.log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                Stdio::from(File::create(dir.join(format!("null-{port}.log")))?)
            }
            None => Stdio::null(),
        };
        let child = Command::new(&binary)
            .arg("null-server")
            .arg("--port")
            .arg(port.to_string())
            .arg("--worker-threads")
            .arg(args.server_threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = NullServer { child, port };
        server.wait_until_serving().await?;
        Ok(server)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until this process, and not another one on the port, answers.
    async fn wait_until_serving(&mut self) -> anyhow::Result<()> {
        let address = self.address();
        let pid = self.pid();
        let child = &mut self.child;
        let what = format!("the null server on {address}");
        let started = poll_until(&what, START_DEADLINE, Duration::from_millis(10), || {
            // A server that could not bind its port has exited: say so now.
            let exited = child.try_wait();
            let address = &address;
            async move {
                match exited {
                    Ok(Some(status)) => {
                        let why =
                            format!("the null server exited at start ({status}): is {address} taken (--client-port)?");
                        Some(Err(anyhow!(why)))
                    }
                    Err(error) => Some(Err(anyhow!("waiting for the null server: {error}"))),
                    Ok(None) => {
                        let status = node_status(&Network::tcp(), address, PROBE).await.ok()?;
                        (status.pid == pid).then_some(Ok(()))
                    }
                }
            }
        });
        started.await?
    }
}

impl Drop for NullServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
