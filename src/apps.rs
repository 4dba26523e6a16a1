//! `lepton apps list|get|put|delete`: a client of a running `lepton serve`'s admin API, for
//! operators' scripts. Prints the API's JSON answer; exits non-zero on any non-2xx answer.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

/// `lepton apps` options.
#[derive(Debug, clap::Args)]
pub struct AppsArgs {
    /// The admin API.
    #[arg(long, env = "LEPTON_ADMIN", default_value = "http://127.0.0.1:9180")]
    pub admin: String,
    /// The bearer token.
    #[arg(long, env = "LEPTON_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
    #[command(subcommand)]
    pub command: AppsCommand,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum AppsCommand {
    /// Every app with its status.
    List,
    /// One app with its status.
    Get {
        /// The app's name.
        name: String,
    },
    /// Create or replace an app from a JSON file (the per-app object; `-` for stdin).
    Put {
        /// The app's name.
        name: String,
        /// The JSON file.
        file: PathBuf,
        /// Answer at once instead of when the app serves or failed.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove an app.
    Delete {
        /// The app's name.
        name: String,
    },
}

/// Run one client command.
pub async fn run(args: AppsArgs) -> Result<()> {
    let base = args.admin.trim_end_matches('/');
    let client = reqwest::Client::new();
    let auth = format!("Bearer {}", args.token);
    let request = match &args.command {
        AppsCommand::List => client.get(format!("{base}/v1/apps")),
        AppsCommand::Get { name } => client.get(format!("{base}/v1/apps/{name}")),
        AppsCommand::Put {
            name,
            file,
            no_wait,
        } => {
            let body = if file.as_os_str() == "-" {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .context("reading the app from stdin")?;
                text
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let wait = if *no_wait { "?wait=false" } else { "" };
            client
                .put(format!("{base}/v1/apps/{name}{wait}"))
                .header("content-type", "application/json")
                .body(body)
        }
        AppsCommand::Delete { name } => client.delete(format!("{base}/v1/apps/{name}")),
    };
    let res = request
        .header("authorization", auth)
        .send()
        .await
        .with_context(|| format!("cannot reach the admin API at {base}"))?;
    let status = res.status();
    let text = res.text().await.context("reading the admin API's answer")?;
    print!("{text}");
    if !status.is_success() {
        bail!("the admin API answered {status}");
    }
    Ok(())
}
