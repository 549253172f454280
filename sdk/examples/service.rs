//! A service that reads its database password through the SDK (built by `make test`).
use coffer_sdk::{Coffer, Config, Endpoint};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nodes = [
        ("http://127.0.0.1:7401", "eu-west"),
        ("http://127.0.0.1:7400", "us-east"),
    ];
    let endpoints = nodes
        .iter()
        .map(|(addr, region)| Endpoint {
            addr: addr.to_string(),
            region: region.to_string(),
        })
        .collect();
    let token = std::env::var("COFFER_TOKEN")?;
    let coffer = Coffer::new(Config::new("eu-west", token, endpoints))?;
    // Fail closed: without its database password the service does not start.
    coffer.require(&["acme/prod/db"]).await?;
    for _ in 0..3 {
        // From the cache (kept fresh by the watch stream); one fetch for any number of callers.
        let password = coffer.get("acme/prod/db").await?;
        println!(
            "connecting with version {} ({} bytes)",
            password.version,
            password.value.len()
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    Ok(())
}
