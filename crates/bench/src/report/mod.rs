//! `docs/benchmarks.md` with its charts and raw data: [`analysis`] computes
//! the figures, `markdown` writes the generated section, and this module
//! puts them in place (beside `crate::charts`).
//!
//! The report file has a hand-written part and a generated section between
//! two markers; a run replaces only the generated section, so edits to the
//! rest survive. A missing file is created from a template.

pub mod analysis;
mod markdown;

use std::path::Path;

use anyhow::{Context, Result};

use crate::model::{workspace_root, Meta};
use markdown::{BEGIN, END};

pub use analysis::Report;

/// The hand-written part, used when the report does not exist yet.
const TEMPLATE: &str = include_str!("../report_template.md");

impl Report<'_> {
    /// Writes the report to `out`, its charts and raw data beside it (in
    /// `benchmarks/`).
    pub fn write(&self, out: &Path, meta: &Meta) -> Result<()> {
        let dir = out.parent().unwrap_or(Path::new(".")).join("benchmarks");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let (charts, note) = match crate::charts::render(self, &dir) {
            Ok(c) => (c, None),
            Err(e) => (Vec::new(), Some(format!("Charts were not drawn: {e:#}."))),
        };
        let json = serde_json::json!({
            "meta": meta,
            "plan": self.plan,
            "results": self.results,
        });
        std::fs::write(
            dir.join("results.json"),
            serde_json::to_string_pretty(&json)?,
        )?;

        let root = workspace_root();
        let generated = self.markdown(meta, &charts, note.as_deref(), &root);
        let existing = std::fs::read_to_string(out).unwrap_or_default();
        let text = match (existing.find(BEGIN), existing.find(END)) {
            (Some(b), Some(e)) if b < e => {
                format!(
                    "{}{}{}",
                    &existing[..b],
                    generated.trim_end(),
                    &existing[e + END.len()..]
                )
            }
            _ => format!("{TEMPLATE}\n{generated}"),
        };
        std::fs::write(out, text).with_context(|| format!("write {}", out.display()))
    }
}
