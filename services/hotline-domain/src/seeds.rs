//! The seed data compiled into every binary. The files live in `seeds/` at the repository root;
//! they are embedded so a deployed service never reads the source tree.

pub const UNITS_TSV: &str = include_str!("../../../seeds/units.tsv");
pub const SCHOOLS_TSV: &str = include_str!("../../../seeds/schools.tsv");
pub const TAXONOMY_TOML: &str = include_str!("../../../seeds/taxonomy.toml");
pub const DISPATCH_TOML: &str = include_str!("../../../seeds/dispatch.toml");
pub const DEADLINE_POLICY_TOML: &str = include_str!("../../../seeds/deadline-policy.toml");
pub const HOLIDAYS_TSV: &str = include_str!("../../../seeds/calendar/holidays.tsv");

#[cfg(test)]
pub(crate) const TOPICS_TSV_FOR_TESTS: &str = include_str!("../../../seeds/topics.tsv");

/// Labelled example appeals (JSONL `{"text","label",…}`), the topic model's training data.
pub const TRAINING_EXAMPLES: &[&str] = &[
    include_str!("../../../seeds/training/examples-a.jsonl"),
    include_str!("../../../seeds/training/examples-b.jsonl"),
];
