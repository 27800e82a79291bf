//! The layers of `docs/architecture.md` hold: each module imports only from the layers below
//! it. A `use` that crosses the wrong way fails here, before it grows into a cycle.

use std::path::Path;

/// For each layer (a directory or file under `src/`), the crate modules it may not name.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "model",
        &[
            "api",
            "app",
            "state",
            "service",
            "store",
            "domain",
            "db",
            "auth",
            "bootstrap",
            "jobs",
            "crypto",
            "error",
            "telemetry",
        ],
    ),
    ("domain", &["api", "app", "state", "service", "store", "db", "auth", "bootstrap", "jobs"]),
    ("store", &["api", "app", "state", "service", "domain", "auth", "bootstrap", "jobs", "crypto", "webhooks"]),
    ("service", &["api", "app", "bootstrap", "jobs"]),
    ("crypto", &["api", "app", "state", "service", "store", "domain", "auth", "jobs"]),
    ("wire", &["api", "app", "state", "service", "store", "auth", "bootstrap", "jobs", "events", "webhooks"]),
    ("events.rs", &["api", "app", "state", "service", "store", "auth", "bootstrap", "jobs", "webhooks"]),
    ("error.rs", &["api", "app", "state", "service", "store", "domain", "auth", "jobs"]),
    ("telemetry.rs", &["api", "app", "state", "service", "store", "domain", "auth", "jobs", "error"]),
];

fn rust_files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_file() {
        out.push(path.to_path_buf());
    } else if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            rust_files(&e.path(), out);
        }
    }
}

#[test]
fn modules_import_only_from_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut crossings = Vec::new();
    for (layer, forbidden) in FORBIDDEN {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "no sources under {layer}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for module in *forbidden {
                    if code.contains(&format!("crate::{module}::")) || code.contains(&format!("crate::{module};")) {
                        crossings.push(format!("{}:{}: {layer} names crate::{module}", file.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(crossings.is_empty(), "imports against the layering:\n{}", crossings.join("\n"));
}
