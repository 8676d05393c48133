//! The seed data compiled into every binary. The files live in `seeds/` at the repository root;
//! they are embedded so a deployed service never reads the source tree.

pub const UNITS_TSV: &str = include_str!("../../../seeds/units.tsv");
pub const SCHOOLS_TSV: &str = include_str!("../../../seeds/schools.tsv");
pub const TAXONOMY_TOML: &str = include_str!("../../../seeds/taxonomy.toml");
pub const DISPATCH_TOML: &str = include_str!("../../../seeds/dispatch.toml");
pub const DEADLINE_POLICY_TOML: &str = include_str!("../../../seeds/deadline-policy.toml");
pub const HOLIDAYS_TSV: &str = include_str!("../../../seeds/calendar/holidays.tsv");
pub const PROACTIVE_TOML: &str = include_str!("../../../seeds/proactive.toml");
pub const PLAYBOOKS_TOML: &str = include_str!("../../../seeds/playbooks.toml");
/// Labelled repeat pairs (JSONL), the repeat linker's evaluation set.
pub const REPEAT_PAIRS_JSONL: &str = include_str!("../../../seeds/repeats/pairs.jsonl");

/// `seeds/proactive.toml`: thresholds of repeats, hotspots and special items.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ProactiveSeeds {
    pub version: String,
    pub repeats: crate::repeats::RepeatPolicy,
    pub hotspots: crate::hotspots::HotspotPolicy,
    pub special_items: crate::special::SpecialItemPolicy,
}

pub fn proactive() -> ProactiveSeeds {
    toml::from_str(PROACTIVE_TOML).expect("seeds/proactive.toml is checked by the tests")
}

/// The labelled repeat pairs; a line that does not parse is a defect the tests catch.
pub fn repeat_pairs() -> Vec<crate::repeats::LabelledPair> {
    REPEAT_PAIRS_JSONL
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("seeds/repeats/pairs.jsonl parses"))
        .collect()
}

#[cfg(test)]
pub(crate) const TOPICS_TSV_FOR_TESTS: &str = include_str!("../../../seeds/topics.tsv");

/// Labelled example appeals (JSONL `{"text","label",…}`), the topic model's training data.
pub const TRAINING_EXAMPLES: &[&str] = &[
    include_str!("../../../seeds/training/examples-a.jsonl"),
    include_str!("../../../seeds/training/examples-b.jsonl"),
    include_str!("../../../seeds/training/examples-c.jsonl"),
    include_str!("../../../seeds/training/examples-d.jsonl"),
    include_str!("../../../seeds/training/examples-e.jsonl"),
    include_str!("../../../seeds/training/examples-f.jsonl"),
    include_str!("../../../seeds/training/examples-g.jsonl"),
    include_str!("../../../seeds/training/examples-h.jsonl"),
    include_str!("../../../seeds/training/examples-i.jsonl"),
];
