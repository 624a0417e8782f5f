//! `docs/TIMING.md` shows the timing model's table and guarantees for the seed's config and
//! for the deploy kit's: this keeps them true (`cargo test timing`).

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The YAML block of the seed README (the original description we build from).
fn seed_yaml() -> String {
    let text = read("../shared/seed/SyncGuard-README.md");
    let start = text
        .find("```yaml")
        .expect("a yaml block in the seed README")
        + 7;
    let end = start + text[start..].find("```").expect("its end");
    text[start..end].to_string()
}

fn section(name: &str, yaml: &str) -> String {
    let config = match syncguard_config::from_yaml_str(yaml, name) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("{name}: {e}"),
    };
    let t = config.timing();
    let mut out = t.markdown_table();
    out.push('\n');
    for g in t.guarantees() {
        out.push_str(&format!("- {g}\n"));
    }
    out
}

#[test]
fn timing_doc_shows_the_models_numbers_for_the_seed_and_the_deploy_kit() {
    let doc = read("docs/TIMING.md");
    let sections: Vec<(&str, String)> = [
        ("the seed's config", seed_yaml()),
        (
            "deploy/config/primary.yaml",
            read("deploy/config/primary.yaml"),
        ),
    ]
    .into_iter()
    .map(|(name, yaml)| (name, section(name, &yaml)))
    .collect();
    if std::env::var_os("SYNCGUARD_PRINT_TIMING_DOC").is_some() {
        for (name, want) in &sections {
            println!("### {name}\n\n{want}");
        }
    }
    for (name, want) in sections {
        assert!(
            doc.contains(&want),
            "docs/TIMING.md does not show the model's table for {name}; it should contain:\n{want}"
        );
    }
}
