use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = uptime_node::ctl::Cli::parse();
    match uptime_node::ctl::run(cli).await {
        Ok(out) => {
            print!("{}", out.stdout);
            if let Some(warning) = out.warning() {
                eprintln!("uptimectl: {warning}");
                std::process::exit(uptime_node::ctl::EXIT_STALE);
            }
        }
        Err(e) => {
            eprintln!("uptimectl: {e}");
            std::process::exit(1);
        }
    }
}
