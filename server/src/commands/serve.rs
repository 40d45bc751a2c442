//! `zfvis serve`: the web app and the JSON API (`crate::http`).

use super::args::DeviceArg;
use super::local::resource_dir;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port)
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Folder of model folders
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Where uploads are stored
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Static files (JS, CSS) [default: static/ in the working directory,
    /// else beside the binary]
    #[arg(long)]
    static_dir: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
    /// A dataset folder for the top-9 and timeline views (indexed in the background)
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Jobs waiting for the compute worker before answering 503
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Bound the upload store to N MB: least recently used uploads are
    /// evicted first (never images of a stored set); default: no bound
    #[arg(long)]
    max_store_mb: Option<u64>,
    /// Concurrent API requests per client address (429 beyond; 0: no cap)
    #[arg(long, default_value_t = 8)]
    per_client: usize,
    /// Seconds a connection may take to send a request's headers
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request may take (408 beyond); long analyses run as
    /// background jobs that this does not bound
    #[arg(long, default_value_t = 120)]
    request_timeout: u64,
    /// Example photos offered on the empty page (examples.json + files)
    /// [default: examples/ in the working directory, else beside the binary]
    #[arg(long)]
    examples: Option<PathBuf>,
}

impl ServeArgs {
    fn config(self) -> Result<crate::http::Config> {
        if let Some(d) = &self.dataset {
            if !d.is_dir() {
                bail!("--dataset {}: not a folder", d.display());
            }
        }
        Ok(crate::http::Config {
            models: self.models,
            data: self.data,
            static_dir: self
                .static_dir
                .unwrap_or_else(|| resource_dir("static/app.js")),
            device: self.device.get()?,
            queue: self.queue.max(1),
            dataset: self.dataset,
            max_store: self.max_store_mb.map(|mb| mb.saturating_mul(1024 * 1024)),
            examples: self
                .examples
                .unwrap_or_else(|| resource_dir("examples/examples.json")),
            limits: crate::http::net::Limits {
                header_timeout: std::time::Duration::from_secs(self.header_timeout.max(1)),
                request_timeout: std::time::Duration::from_secs(self.request_timeout.max(1)),
                per_client: self.per_client,
                ..Default::default()
            },
        })
    }
}

pub fn run(a: ServeArgs) -> Result<()> {
    let addr = a.addr.clone();
    let cfg = a.config()?;
    // glibc's malloc, tuned for a long-running server (measured by `zfvis-dev
    // soak`): two arenas instead of 8 per core, and tensors of 1 MB and more
    // mapped and unmapped whole instead of fragmenting the heaps.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
    // The log goes to stderr, beside the serving line (stdout stays free).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        zfvis_core::models::check_models_dir(&cfg.models)?;
        let listing = zfvis_core::engine::list_models(&cfg.models)?;
        let n = listing.models.len();
        for b in &listing.broken {
            eprintln!("zfvis: model folder {} does not load: {}", b.name, b.error);
        }
        let limits = cfg.limits;
        let (app, jobs) = crate::http::app(cfg)?;
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        eprintln!(
            "zfvis: {n} model(s); serving on http://{}",
            listener.local_addr()?
        );
        let stop = async {
            crate::http::net::shutdown_signal().await;
            // Jobs stop at their next check, between batches.
            jobs.cancel_all();
        };
        crate::http::net::serve(listener, app, limits, stop).await?;
        Ok::<_, anyhow::Error>(limits)
    })
    .map(|limits| {
        // Whatever still runs off the runtime (a job between two checks) is
        // not waited for beyond the grace period.
        rt.shutdown_timeout(limits.grace.min(std::time::Duration::from_secs(10)));
        eprintln!("zfvis: stopped");
    })
}
