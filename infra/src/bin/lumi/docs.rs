//! `lumi openapi`: writes the OpenAPI document generated from the handlers
//! (`lumi_infra::openapi`), `docs/openapi.yaml` by default; a test holds the checked-in file
//! equal to it.

use std::path::PathBuf;

use anyhow::Context as _;

#[derive(Debug, clap::Args)]
pub struct OpenapiArgs {
    /// Where to write it (`-`: standard output); docs/openapi.yaml by default
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn write_openapi(args: OpenapiArgs) -> anyhow::Result<()> {
    let yaml = lumi_infra::openapi::yaml()?;
    let out = args
        .out
        .unwrap_or_else(|| lumi_infra::workspace_root().join("docs/openapi.yaml"));
    if out.as_os_str() == "-" {
        print!("{yaml}");
        return Ok(());
    }
    std::fs::write(&out, yaml).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}
