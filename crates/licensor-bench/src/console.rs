//! `--console`: how long the admin console's pages take on the seeded database, one request at
//! a time (an operator clicking), with the server's CPU per request. The pages that read many
//! licenses are the ones that must stay fast at 1M: the overview's counts, the list's first and
//! a deep page, search by key and by text, a status filter.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::{cpu_seconds, Server};

/// Requests per page; the median and the slowest are reported.
const ROUNDS: usize = 7;

pub async fn run(server: Server, key: &str, license: &licensor::model::License, total: usize) -> anyhow::Result<()> {
    let Server { mut child, pid, base } = server;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie = sign_in(&client, &base).await?;
    // The page after the middle license: what following "Next" half-way down costs.
    let deep = format!("{}_{}", license.created_at, license.id);
    let pages = [
        ("overview", "/admin".to_string()),
        ("licenses, page 1", "/admin/licenses".to_string()),
        ("licenses, half-way down", format!("/admin/licenses?before={deep}")),
        ("search by key", format!("/admin/licenses?q={}", urlencode(key))),
        ("search by text, no match", "/admin/licenses?q=no-such-customer".to_string()),
        ("status ACTIVE, page 1", "/admin/licenses?status=ACTIVE".to_string()),
        ("status EXPIRED, page 1", "/admin/licenses?status=EXPIRED".to_string()),
        ("search by text, a match", "/admin/licenses?q=bench".to_string()),
        ("one license", format!("/admin/licenses/{}", license.id)),
    ];
    println!("admin console pages, {total} licenses, {ROUNDS} requests each, one at a time:");
    println!("{:<28} {:>10} {:>10} {:>14}", "page", "median ms", "max ms", "server CPU ms");
    for (name, path) in pages {
        let mut times = Vec::with_capacity(ROUNDS);
        let cpu_before = cpu_seconds(pid);
        for _ in 0..ROUNDS {
            let start = Instant::now();
            let r = client.get(format!("{base}{path}")).header("cookie", &cookie).send().await?;
            let status = r.status();
            let body = r.text().await?;
            if !status.is_success() {
                bail!("{path} answered {status}: {}", body.chars().take(300).collect::<String>());
            }
            times.push(start.elapsed());
        }
        let cpu = (cpu_seconds(pid) - cpu_before) * 1e3 / ROUNDS as f64;
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("{name:<28} {:>10.1} {:>10.1} {:>14.1}", ms(times[ROUNDS / 2]), ms(times[ROUNDS - 1]), cpu);
    }
    let _ = child.kill().await;
    Ok(())
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The admin session cookie, by the sign-in form as a browser submits it.
async fn sign_in(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let form = client.get(format!("{base}/admin/sign-in")).send().await?;
    let cookies: Vec<String> = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok()?.split(';').next().map(str::to_string))
        .collect();
    let body = form.text().await?;
    let marker = "name=\"csrf\" value=\"";
    let at = body.find(marker).context("no csrf field on the sign-in page")? + marker.len();
    let csrf = body[at..].split('"').next().unwrap_or_default().to_string();
    let r = client
        .post(format!("{base}/admin/sign-in"))
        .header("cookie", cookies.join("; "))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&email=bench%40example.com&password=bench-password"))
        .send()
        .await?;
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|c| c.to_str().ok()?.split(';').next().map(str::to_string))
        .find(|c| c.starts_with("licensor_admin="))
        .context("sign-in gave no session")?;
    Ok(session)
}
