//! Operator commands. This module's job is to print results, so it writes to stdout.
#![allow(clippy::print_stdout)]

use crate::cli::{CalendarCommand, DlqCommand, TokenCommand};
use crate::config::Config;
use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use hotline_api::intake::{self, IntakeError};
use hotline_classifier::hybrid::TopicClassifier;
use hotline_classifier::{Featurizer, LinearModel};
use hotline_domain::appeal::{AppealInput, NewAppeal, Provenance};
use hotline_domain::classify::KeywordClassifier;
use hotline_events::Actor;
use hotline_store::tokens::{self, NewToken, Role};
use serde::Deserialize;
use std::io::{BufRead, Write};
use std::path::Path;

pub async fn token(config: &Config, command: TokenCommand) -> anyhow::Result<()> {
    let pool = hotline_store::db::prepare(&config.database_url, 2)
        .await
        .with_context(|| {
            format!(
                "failed to reach the database at {}",
                redact(&config.database_url)
            )
        })?;
    let mut conn = pool.acquire().await?;
    match command {
        TokenCommand::Issue {
            role,
            unit,
            school,
            name,
            expires_in_days,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("unknown role `{role}`: operator, unit, manager, admin or school")
            })?;
            let school = match (role, school) {
                (Role::School, None) => bail!("--role school needs --school NAME"),
                (Role::School, Some(raw)) => {
                    let directory = hotline_domain::schools::SchoolDirectory::builtin();
                    let found = directory.by_name(raw.trim()).with_context(|| {
                        format!("unknown school `{raw}`; see seeds/schools.tsv")
                    })?;
                    Some(found.name.clone())
                }
                (_, Some(_)) => bail!("--school is only for --role school"),
                (_, None) => None,
            };
            match (role, &unit) {
                (Role::Unit, None) => bail!("--role unit needs --unit CODE"),
                (Role::Unit, Some(code)) => {
                    let known: bool =
                        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM units WHERE code = $1)")
                            .bind(code)
                            .fetch_one(&mut *conn)
                            .await?;
                    if !known {
                        bail!("unknown unit `{code}`; see seeds/units.tsv");
                    }
                }
                (_, Some(_)) => bail!("--unit is only for --role unit"),
                (_, None) => {}
            }
            let name = if name.is_empty() {
                format!(
                    "{} {}",
                    role.as_str(),
                    unit.as_deref().or(school.as_deref()).unwrap_or_default()
                )
                .trim()
                .to_owned()
            } else {
                name
            };
            let expires_at = expires_in_days.map(|d| Utc::now() + chrono::Duration::days(d));
            let (_, token) = tokens::issue(
                &mut conn,
                &NewToken {
                    role,
                    unit: unit.as_deref(),
                    school: school.as_deref(),
                    name: &name,
                    expires_at,
                },
            )
            .await?;
            println!("{token}");
        }
        TokenCommand::List => {
            #[derive(sqlx::FromRow, serde::Serialize)]
            struct Row {
                id: uuid::Uuid,
                role: String,
                unit_code: Option<String>,
                school: Option<String>,
                name: String,
                created_at: DateTime<Utc>,
                expires_at: Option<DateTime<Utc>>,
                revoked_at: Option<DateTime<Utc>>,
            }
            let rows = sqlx::query_as::<_, Row>(
                "SELECT id, role, unit_code, school, name, created_at, expires_at, revoked_at
                 FROM tokens ORDER BY created_at",
            )
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                println!("{}", serde_json::to_string(&row)?);
            }
        }
        TokenCommand::Revoke { id } => {
            if !tokens::revoke(&mut conn, id, Utc::now()).await? {
                bail!("no active token with id {id}");
            }
        }
    }
    Ok(())
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// One row of a 12345 platform export. CSV headers and JSONL keys are the same names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRow {
    external_id: Option<String>,
    content: Option<String>,
    channel: Option<String>,
    received_at: Option<String>,
    caller_name: Option<String>,
    caller_phone: Option<String>,
    caller_confidential: Option<String>,
    district: Option<String>,
    school: Option<String>,
}

fn parse_row(
    row: ExportRow,
    now: DateTime<Utc>,
    provenance: Provenance,
) -> anyhow::Result<NewAppeal> {
    let received_at = match row
        .received_at
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(raw) => {
            Some(parse_time(raw).with_context(|| format!("received_at: `{raw}` is not a time"))?)
        }
    };
    let confidential = match row.caller_confidential.as_deref().map(str::trim) {
        None | Some("") | Some("false") | Some("0") | Some("no") => false,
        Some("true") | Some("1") | Some("yes") => true,
        Some(other) => bail!("caller_confidential: `{other}` is not true/false"),
    };
    let input = AppealInput {
        content: row.content,
        channel: Some(row.channel.unwrap_or_else(|| "platform_12345".into())),
        caller_name: row.caller_name,
        caller_phone: row.caller_phone,
        caller_confidential: confidential,
        district: row.district,
        school: row.school,
        received_at,
        external_id: row.external_id,
    };
    let appeal = NewAppeal::parse(input, now, provenance)?;
    if appeal.external_id.is_none() {
        bail!("external_id: is required for imports (it makes re-imports idempotent)");
    }
    Ok(appeal)
}

/// RFC 3339, or `YYYY-MM-DD HH:MM[:SS]` in China time, as platform exports write it.
fn parse_time(raw: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    let china = hotline_domain::calendar::china_offset();
    for format in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y/%m/%d %H:%M:%S",
        "%Y/%m/%d %H:%M",
    ] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(raw, format) {
            if let Some(t) = naive.and_local_timezone(china).single() {
                return Ok(t.with_timezone(&Utc));
            }
        }
    }
    bail!("expected RFC 3339 or YYYY-MM-DD HH:MM:SS")
}

pub async fn import(
    config: &Config,
    file: &Path,
    format: Option<&str>,
    historical: bool,
) -> anyhow::Result<()> {
    let format = format
        .map(str::to_owned)
        .or_else(|| {
            file.extension()
                .and_then(|e| e.to_str())
                .map(str::to_lowercase)
        })
        .unwrap_or_default();
    let text = std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))?;
    let rows: Vec<(usize, anyhow::Result<ExportRow>)> = match format.as_str() {
        "csv" => csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_slice())
            .deserialize::<ExportRow>()
            .enumerate()
            .map(|(i, r)| (i + 2, r.map_err(anyhow::Error::from)))
            .collect(),
        "jsonl" | "json" | "ndjson" => text
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(i, line)| {
                (
                    i + 1,
                    serde_json::from_slice::<ExportRow>(line).map_err(anyhow::Error::from),
                )
            })
            .collect(),
        other => bail!("unknown import format `{other}`: use --format csv or --format jsonl"),
    };
    let pool = hotline_store::db::prepare(&config.database_url, 4).await?;
    let caller_key_secret = config.caller_key_secret();
    let provenance = if historical {
        Provenance::Historical
    } else {
        Provenance::Live
    };
    let actor = Actor {
        kind: "operator".into(),
        id: "import".into(),
        name: format!("import {}", file.display()),
        unit: None,
    };
    let (mut created, mut existing, mut failed) = (0usize, 0usize, 0usize);
    for (line, row) in rows {
        let now = Utc::now();
        let appeal = match row.and_then(|r| parse_row(r, now, provenance)) {
            Ok(appeal) => appeal,
            Err(error) => {
                failed += 1;
                tracing::warn!(line, error = %format!("{error:#}"), "row skipped");
                continue;
            }
        };
        let fingerprint = intake::fingerprint(&appeal);
        match intake::file_appeal(
            &pool,
            &appeal,
            actor.clone(),
            None,
            &fingerprint,
            &caller_key_secret,
            now,
        )
        .await
        {
            Ok(outcome) if outcome.created => created += 1,
            Ok(_) => existing += 1,
            Err(IntakeError::KeyReused { existing: id }) => {
                failed += 1;
                tracing::warn!(line, %id, "external_id already imported with different content; row skipped");
            }
            Err(error) => {
                return Err(error).with_context(|| format!("line {line}: failed to store"))
            }
        }
    }
    println!(
        "{}",
        serde_json::json!({"created": created, "already_present": existing, "skipped": failed})
    );
    Ok(())
}

pub async fn dlq(config: &Config, command: DlqCommand) -> anyhow::Result<()> {
    let kafka = config.kafka()?;
    let reader = kafka.clone();
    let letters = tokio::task::spawn_blocking(move || {
        hotline_bus::dead_letter::read_all(&reader, std::time::Duration::from_secs(15))
    })
    .await??;
    let pool = hotline_store::db::connect(&config.database_url, 2).await?;
    let topic = kafka.dead_letter_topic();
    let redriven: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT dlq_partition, dlq_offset FROM dead_letter_redrives WHERE dlq_topic = $1",
    )
    .bind(&topic)
    .fetch_all(&pool)
    .await?;
    let was_redriven =
        |l: &hotline_bus::dead_letter::DeadLetter| redriven.contains(&(l.partition, l.offset));
    match command {
        DlqCommand::List => {
            let mut out = std::io::stdout().lock();
            for letter in &letters {
                let mut value = serde_json::to_value(letter)?;
                value["redriven"] = serde_json::Value::Bool(was_redriven(letter));
                writeln!(out, "{value}")?;
            }
        }
        DlqCommand::Redrive { only } => {
            let only = match only {
                None => None,
                Some(raw) => {
                    let (p, o) = raw
                        .split_once(':')
                        .context("--only takes PARTITION:OFFSET")?;
                    Some((p.parse::<i32>()?, o.parse::<i64>()?))
                }
            };
            let publisher = hotline_bus::Publisher::new(&kafka)?;
            let mut count = 0;
            for letter in letters.iter().filter(|l| !was_redriven(l)) {
                if only.is_some_and(|o| o != (letter.partition, letter.offset)) {
                    continue;
                }
                hotline_bus::dead_letter::redrive(&publisher, letter).await?;
                sqlx::query(
                    "INSERT INTO dead_letter_redrives (dlq_topic, dlq_partition, dlq_offset) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&topic)
                .bind(letter.partition)
                .bind(letter.offset)
                .execute(&pool)
                .await?;
                count += 1;
            }
            println!("{}", serde_json::json!({"redriven": count}));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct ClassifyLine {
    id: serde_json::Value,
    text: String,
}

/// A topic model (hybrid with the taxonomy) or a model with any other labels.
enum Classifier {
    Topics(TopicClassifier),
    Other(LinearModel, Featurizer, KeywordClassifier),
}

impl Classifier {
    fn classify(&self, text: &str) -> serde_json::Value {
        let c = match self {
            Classifier::Topics(topics) => topics.classify(text, None, None),
            Classifier::Other(model, featurizer, keywords) => {
                let base = keywords.classify(text, None, None);
                let mut scratch = Vec::new();
                let p = model.predict(featurizer, text, &mut scratch);
                let mut ranked: Vec<(usize, f32)> =
                    p.probabilities.iter().copied().enumerate().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                let round = |x: f32| (f64::from(x) * 10_000.0).round() / 10_000.0;
                return serde_json::json!({
                    "topic": model.labels[ranked[0].0],
                    "confidence": round(ranked[0].1),
                    "alternatives": ranked.iter().skip(1).take(3)
                        .map(|(l, p)| serde_json::json!({"topic": model.labels[*l], "confidence": round(*p)}))
                        .collect::<Vec<_>>(),
                    "urgent": base.urgent,
                    "urgent_cue": base.urgent_cue,
                    "district": base.district,
                    "school": base.school,
                    "terms": model.explain(featurizer, text, ranked[0].0, 8),
                    "model_version": model.version,
                });
            }
        };
        serde_json::json!({
            "topic": c.topic,
            "confidence": c.confidence,
            "alternatives": c.alternatives,
            "urgent": c.urgent,
            "urgent_cue": c.urgent_cue,
            "district": c.district,
            "school": c.school,
            "terms": c.terms,
            "model_version": c.model_version,
        })
    }
}

pub fn classify(model: Option<&Path>, input: Option<&Path>) -> anyhow::Result<()> {
    let classifier = match model {
        None => Classifier::Topics(crate::classifier::builtin()?),
        Some(dir) => {
            let model = crate::classifier::load_model(dir)?;
            if model
                .labels
                .iter()
                .all(|l| l.parse::<hotline_domain::TopicCode>().is_ok())
            {
                Classifier::Topics(TopicClassifier::new(
                    model,
                    KeywordClassifier::builtin(),
                    hotline_classifier::hybrid::DEFAULT_KEYWORD_WEIGHT,
                )?)
            } else {
                let featurizer = Featurizer::new(model.features);
                Classifier::Other(model, featurizer, KeywordClassifier::builtin())
            }
        }
    };
    let reader: Box<dyn BufRead> = match input {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .with_context(|| format!("failed to open {}", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in reader.lines() {
        let line = line.context("failed to read input")?;
        if line.trim().is_empty() {
            continue;
        }
        let value = match serde_json::from_str::<ClassifyLine>(&line) {
            Ok(item) => {
                let mut value = classifier.classify(&item.text);
                let mut with_id = serde_json::Map::new();
                with_id.insert("id".into(), item.id);
                if let serde_json::Value::Object(fields) = value.take() {
                    with_id.extend(fields);
                }
                serde_json::Value::Object(with_id)
            }
            Err(error) => {
                let id = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id").cloned())
                    .unwrap_or(serde_json::Value::Null);
                serde_json::json!({"id": id, "error": error.to_string()})
            }
        };
        writeln!(out, "{value}")?;
    }
    out.flush()?;
    Ok(())
}

pub async fn calendar(config: &Config, command: CalendarCommand) -> anyhow::Result<()> {
    let pool = hotline_store::db::prepare(&config.database_url, 2).await?;
    if let CalendarCommand::Load { file } = &command {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("failed to read {}", file.display()))?;
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') || line.starts_with("date\t") {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            let date = chrono::NaiveDate::parse_from_str(cols[0].trim(), "%Y-%m-%d")
                .with_context(|| format!("line {}: `{}` is not a date", i + 1, cols[0]))?;
            let kind = cols.get(1).map(|k| k.trim()).unwrap_or_default();
            if hotline_domain::calendar::DayKind::parse(kind).is_none() {
                bail!("line {}: kind must be `off` or `work`, not `{kind}`", i + 1);
            }
            rows.push((
                date,
                kind.to_owned(),
                cols.get(2).map(|n| n.trim().to_owned()).unwrap_or_default(),
            ));
        }
        let mut conn = pool.acquire().await?;
        hotline_store::calendar::upsert(&mut conn, &rows).await?;
        tracing::info!(
            days = rows.len(),
            "calendar days loaded; running services pick them up within their reload interval"
        );
    }
    let calendar = hotline_workers::calendar::effective(&pool).await?;
    let today = Utc::now()
        .with_timezone(&hotline_domain::calendar::china_offset())
        .date_naive();
    println!(
        "{}",
        serde_json::json!({"years": calendar.years(), "missing_years": calendar.missing_years(today)})
    );
    Ok(())
}

/// Recomputes running clocks after a policy (or calendar) change, recording the policy version.
pub async fn recompute_deadlines(config: &Config) -> anyhow::Result<()> {
    use hotline_domain::deadlines::{DeadlineKind, Urgency};
    let policy = crate::app::policy(config)?;
    let pool = hotline_store::db::prepare(&config.database_url, 2).await?;
    let calendar = hotline_workers::calendar::effective(&pool).await?;
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let clocks = hotline_store::deadlines::running(&mut tx).await?;
    for clock in &clocks {
        let kind: DeadlineKind = clock.kind.parse().map_err(anyhow::Error::msg)?;
        let urgency = Urgency::from_flag(clock.urgent);
        let topic = clock.topic.parse().ok();
        let (fresh, limit) = if clock.reopen {
            (
                policy.reopen_clock(clock.starts_at, &calendar),
                policy.reopen_resolve,
            )
        } else {
            (
                policy.clock(kind, urgency, topic, clock.starts_at, &calendar),
                policy.limit(kind, urgency, topic),
            )
        };
        // What happened to the clock since it started still holds: an approved extension's
        // working days, then the time it stood paused.
        let (warn_at, due_at) = fresh.adjusted(
            u32::try_from(clock.extension_working_days).unwrap_or(0),
            chrono::Duration::seconds(clock.paused_seconds.max(0)),
            &policy,
            &calendar,
            limit.in_working_days(),
        );
        hotline_store::deadlines::recompute(
            &mut tx,
            clock.id,
            warn_at,
            due_at,
            &policy.version,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    println!(
        "{}",
        serde_json::json!({"recomputed": clocks.len(), "policy_version": policy.version})
    );
    Ok(())
}
