//! `--include` / `--exclude` name globs.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::util::Failure;

/// Which tensor names to keep.
pub(crate) struct NameFilter {
    include: Option<GlobSet>,
    exclude: GlobSet,
    include_globs: Vec<Glob>,
    exclude_globs: Vec<Glob>,
}

impl NameFilter {
    pub(crate) fn new(include: &[Glob], exclude: &[Glob]) -> Result<NameFilter, Failure> {
        let build = |globs: &[Glob]| {
            let mut b = GlobSetBuilder::new();
            for g in globs {
                b.add(g.clone());
            }
            b.build().map_err(|e| Failure::Usage(e.to_string()))
        };
        Ok(NameFilter {
            include: if include.is_empty() {
                None
            } else {
                Some(build(include)?)
            },
            exclude: build(exclude)?,
            include_globs: include.to_vec(),
            exclude_globs: exclude.to_vec(),
        })
    }

    /// True when `name` matches an include glob (or there is none) and no exclude glob.
    pub(crate) fn keeps(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|s| s.is_match(name)) && !self.exclude.is_match(name)
    }

    /// True when no glob was given.
    pub(crate) fn is_empty(&self) -> bool {
        self.include_globs.is_empty() && self.exclude_globs.is_empty()
    }

    /// The globs (as typed, with their option) that match none of `names`:
    /// most likely typos, worth a warning.
    pub(crate) fn unmatched<'a>(
        &self,
        names: impl Iterator<Item = &'a str> + Clone,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for (option, globs) in [
            ("--include", &self.include_globs),
            ("--exclude", &self.exclude_globs),
        ] {
            for g in globs {
                let m = g.compile_matcher();
                if !names.clone().any(|n| m.is_match(n)) {
                    out.push(format!("{option} '{}'", g.glob()));
                }
            }
        }
        out
    }
}
