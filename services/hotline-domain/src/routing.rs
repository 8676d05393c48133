//! Routing: from a classification to the units that must act, by the dispatch catalogue
//! (`seeds/dispatch.toml`). Pure: the caller supplies the classification and the directories.

use crate::schools::School;
use crate::topic::TopicCode;
use crate::units::{UnitCode, UnitKind, UnitsDirectory};
use crate::SeedError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentRole {
    /// 主办: the one unit that resolves.
    Lead,
    /// 协办: sees the case and adds its part.
    Assisting,
    /// Read-only.
    Informed,
}

impl AssignmentRole {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentRole::Lead => "lead",
            AssignmentRole::Assisting => "assisting",
            AssignmentRole::Informed => "informed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "lead" => Some(AssignmentRole::Lead),
            "assisting" => Some(AssignmentRole::Assisting),
            "informed" => Some(AssignmentRole::Informed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub unit: UnitCode,
    pub role: AssignmentRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Level {
    District,
    Shared,
    Department,
}

#[derive(Debug, Deserialize)]
struct CatalogueFile {
    version: String,
    fallback_unit: String,
    safety_unit: String,
    triage_below_confidence: f64,
    returns_before_ruling: usize,
    rule: Vec<RuleEntry>,
}

#[derive(Debug, Clone, Deserialize)]
struct RuleEntry {
    topic: TopicCode,
    department: UnitCode,
    level: Level,
    #[serde(default)]
    inform: Vec<UnitCode>,
    /// Another department for appeals that say so: universities are the higher-education
    /// office's, not the vocational one's.
    #[serde(default)]
    refine: Vec<Refinement>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Refinement {
    department: UnitCode,
    /// The appeal names one of these...
    any: Vec<String>,
    /// ...and none of these.
    #[serde(default)]
    unless: Vec<String>,
}

impl RuleEntry {
    /// The department for this appeal's text, and the phrase that chose a refinement.
    fn department(&self, text: Option<&str>) -> (&UnitCode, Option<&str>) {
        let Some(text) = text else {
            return (&self.department, None);
        };
        for refinement in &self.refine {
            if refinement.unless.iter().any(|p| text.contains(p.as_str())) {
                continue;
            }
            if let Some(phrase) = refinement.any.iter().find(|p| text.contains(p.as_str())) {
                return (&refinement.department, Some(phrase));
            }
        }
        (&self.department, None)
    }
}

#[derive(Debug, Clone)]
pub struct DispatchCatalogue {
    version: String,
    fallback_unit: UnitCode,
    safety_unit: UnitCode,
    triage_below_confidence: f64,
    returns_before_ruling: usize,
    rules: Vec<RuleEntry>,
}

/// What the router knows about an appeal.
#[derive(Debug, Clone)]
pub struct RoutingInput<'a> {
    pub topic: TopicCode,
    pub confidence: f64,
    pub education_related: bool,
    pub urgent: bool,
    pub district: Option<&'a str>,
    pub school: Option<&'a School>,
    /// The appeal's text, normalised (`text::normalise`), when the router has it: a rule may pick
    /// another department by what it says.
    pub text: Option<&'a str>,
}

impl<'a> RoutingInput<'a> {
    /// What the classifier said about an appeal (its normalised text beside), with the school
    /// it named looked up.
    pub fn classified(
        classification: &'a crate::classify::Classification,
        school: Option<&'a School>,
        normalised_text: &'a str,
    ) -> Self {
        Self {
            topic: classification.topic,
            confidence: classification.confidence,
            education_related: classification.education_related,
            urgent: classification.urgent,
            district: classification.district.as_deref(),
            school,
            text: Some(normalised_text),
        }
    }

    /// An appeal whose topic is settled (a person chose it, or the case was routed once): the
    /// catalogue's answer, never triage for low confidence.
    pub fn settled(
        topic: TopicCode,
        urgent: bool,
        district: Option<&'a str>,
        school: Option<&'a School>,
    ) -> Self {
        Self {
            topic,
            confidence: 1.0,
            education_related: true,
            urgent,
            district,
            school,
            text: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum RoutingDecision {
    Route {
        assignments: Vec<Assignment>,
        rule: String,
        explanation: String,
    },
    /// An operator must decide; `explanation` says why.
    Triage { rule: String, explanation: String },
    /// Not an education matter: back to the 12345 platform.
    TransferOut { rule: String, explanation: String },
}

impl DispatchCatalogue {
    pub fn parse(toml_text: &str, units: &UnitsDirectory) -> Result<Self, SeedError> {
        const FILE: &str = "dispatch.toml";
        let file: CatalogueFile =
            toml::from_str(toml_text).map_err(|e| SeedError::new(FILE, 0, e.to_string()))?;
        let known = |code: &str| -> Result<UnitCode, SeedError> {
            units
                .get(code)
                .map(|u| u.code.clone())
                .ok_or_else(|| SeedError::new(FILE, 0, format!("unknown unit `{code}`")))
        };
        let mut rules = file.rule;
        for rule in &mut rules {
            known(rule.department.as_str())?;
            for unit in &rule.inform {
                known(unit.as_str())?;
            }
            for refinement in &mut rule.refine {
                known(refinement.department.as_str())?;
                if refinement.any.is_empty() {
                    return Err(SeedError::new(
                        FILE,
                        0,
                        format!("a refinement of `{}` names no phrase", rule.topic),
                    ));
                }
                for phrase in refinement
                    .any
                    .iter_mut()
                    .chain(refinement.unless.iter_mut())
                {
                    *phrase = crate::text::normalise(phrase);
                }
            }
        }
        for topic in TopicCode::ALL {
            if !rules.iter().any(|r| r.topic == topic) {
                return Err(SeedError::new(
                    FILE,
                    0,
                    format!("no rule for topic `{topic}`"),
                ));
            }
        }
        Ok(Self {
            version: file.version,
            fallback_unit: known(&file.fallback_unit)?,
            safety_unit: known(&file.safety_unit)?,
            triage_below_confidence: file.triage_below_confidence,
            returns_before_ruling: file.returns_before_ruling.max(1),
            rules,
        })
    }

    pub fn builtin(units: &UnitsDirectory) -> Self {
        Self::parse(crate::seeds::DISPATCH_TOML, units)
            .expect("seeds/dispatch.toml is checked by the tests")
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn triage_below_confidence(&self) -> f64 {
        self.triage_below_confidence
    }

    /// After this many returns the router stops and a manager rules (no ping-pong).
    pub fn returns_before_ruling(&self) -> usize {
        self.returns_before_ruling
    }

    pub fn fallback_unit(&self) -> &UnitCode {
        &self.fallback_unit
    }

    /// The municipal department responsible for a topic.
    pub fn department_for(&self, topic: TopicCode) -> Option<&UnitCode> {
        self.rules
            .iter()
            .find(|r| r.topic == topic)
            .map(|r| &r.department)
    }

    pub fn route(&self, input: &RoutingInput<'_>, units: &UnitsDirectory) -> RoutingDecision {
        if input.confidence < self.triage_below_confidence {
            return RoutingDecision::Triage {
                rule: "triage/low-confidence".into(),
                explanation: format!(
                    "classifier confidence {:.2} for `{}` is below {:.2}",
                    input.confidence, input.topic, self.triage_below_confidence
                ),
            };
        }
        // Only with evidence (non-education phrases, confident) is an appeal sent back to 12345.
        if input.topic == TopicCode::Other && !input.education_related && input.school.is_none() {
            return RoutingDecision::TransferOut {
                rule: "other/not-education".into(),
                explanation: "nothing in the appeal concerns education; back to the 12345 platform"
                    .into(),
            };
        }
        let Some(rule) = self.rules.iter().find(|r| r.topic == input.topic) else {
            return self.fallback(input);
        };

        let directly_administered = input.school.filter(|s| {
            units
                .get(s.administering_unit.as_str())
                .is_some_and(|u| u.kind == UnitKind::Department)
        });
        let district_bureau = input
            .district
            .and_then(|d| units.district_bureau(d))
            .map(|u| u.code.clone());

        let (department, refined_by) = rule.department(input.text);
        let mut plan = Plan::default();
        let (rule_name, explanation) = match (directly_administered, rule.level, district_bureau) {
            (Some(school), _, _) => {
                plan.add(department.clone(), AssignmentRole::Lead);
                plan.add(school.administering_unit.clone(), AssignmentRole::Informed);
                (
                    format!("{}/directly-administered-school", rule.topic),
                    format!(
                        "{} is administered by the bureau ({}); the topic's department leads",
                        school.name, school.administering_unit
                    ),
                )
            }
            (None, Level::Department, bureau) => {
                plan.add(department.clone(), AssignmentRole::Lead);
                if let Some(bureau) = bureau {
                    plan.add(bureau, AssignmentRole::Informed);
                }
                let rule_name = match refined_by {
                    Some(_) => format!("{}/department/{department}", rule.topic),
                    None => format!("{}/department", rule.topic),
                };
                (
                    rule_name,
                    format!("`{}` is handled city-wide by {}", rule.topic, department),
                )
            }
            (None, level, Some(bureau)) => {
                plan.add(bureau.clone(), AssignmentRole::Lead);
                if level == Level::Shared {
                    plan.add(department.clone(), AssignmentRole::Assisting);
                }
                (
                    format!("{}/district", rule.topic),
                    format!(
                        "`{}` in {} goes to the district bureau {bureau}",
                        rule.topic,
                        input.district.unwrap_or_default()
                    ),
                )
            }
            (None, _, None) => {
                plan.add(department.clone(), AssignmentRole::Lead);
                (
                    format!("{}/no-district", rule.topic),
                    format!(
                        "no district known for `{}`; the municipal department {} leads",
                        rule.topic, department
                    ),
                )
            }
        };
        let explanation = match refined_by {
            Some(phrase) => format!("{explanation} (the appeal names {phrase}: {department})"),
            None => explanation,
        };
        for unit in &rule.inform {
            plan.add(unit.clone(), AssignmentRole::Informed);
        }
        if input.urgent {
            plan.add(self.safety_unit.clone(), AssignmentRole::Informed);
        }
        RoutingDecision::Route {
            assignments: plan.0,
            rule: rule_name,
            explanation,
        }
    }

    fn fallback(&self, input: &RoutingInput<'_>) -> RoutingDecision {
        let mut plan = Plan::default();
        plan.add(self.fallback_unit.clone(), AssignmentRole::Lead);
        if input.urgent {
            plan.add(self.safety_unit.clone(), AssignmentRole::Informed);
        }
        RoutingDecision::Route {
            assignments: plan.0,
            rule: "fallback".into(),
            explanation: format!(
                "no dispatch rule covers this education matter; the fallback unit {} takes it (兜底)",
                self.fallback_unit
            ),
        }
    }
}

/// Assignments without duplicates: a unit already assigned keeps its stronger role.
#[derive(Default)]
struct Plan(Vec<Assignment>);

impl Plan {
    fn add(&mut self, unit: UnitCode, role: AssignmentRole) {
        if !self.0.iter().any(|a| a.unit == unit) {
            self.0.push(Assignment { unit, role });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schools::SchoolDirectory;

    fn lead_and_roles(
        decision: &RoutingDecision,
    ) -> Option<(String, Vec<(String, AssignmentRole)>)> {
        match decision {
            RoutingDecision::Route { assignments, .. } => Some((
                assignments
                    .iter()
                    .find(|a| a.role == AssignmentRole::Lead)
                    .map(|a| a.unit.to_string())
                    .unwrap_or_default(),
                assignments
                    .iter()
                    .map(|a| (a.unit.to_string(), a.role))
                    .collect(),
            )),
            _ => None,
        }
    }

    #[test]
    fn routes_by_topic_and_district() {
        let units = UnitsDirectory::builtin();
        let schools = SchoolDirectory::builtin();
        let catalogue = DispatchCatalogue::builtin(&units);
        let second_high = schools.by_name("山东省青岛第二中学");
        let input = |topic, district, urgent| RoutingInput {
            topic,
            confidence: 0.9,
            education_related: true,
            urgent,
            district,
            school: None,
            text: None,
        };
        let check = |input: RoutingInput<'_>, lead: &str, also: &[(&str, AssignmentRole)]| {
            let decision = catalogue.route(&input, &units);
            let (got_lead, roles) = lead_and_roles(&decision).expect("routed");
            assert_eq!(got_lead, lead, "{input:?}");
            for (unit, role) in also {
                assert!(
                    roles.contains(&((*unit).to_owned(), *role)),
                    "{input:?}: {roles:?}"
                );
            }
        };
        check(
            input(TopicCode::Canteen, Some("黄岛区"), false),
            "xihaian",
            &[("qdedu-health", AssignmentRole::Informed)],
        );
        check(input(TopicCode::Canteen, None, false), "qdedu-health", &[]);
        check(
            input(TopicCode::OffCampusTutoring, Some("即墨区"), false),
            "jimo",
            &[("qdedu-private", AssignmentRole::Assisting)],
        );
        check(
            input(TopicCode::Exams, Some("市南区"), false),
            "qdedu-exams",
            &[("shinan", AssignmentRole::Informed)],
        );
        check(
            input(TopicCode::Bullying, Some("李沧区"), true),
            "licang",
            &[("qdedu-safety", AssignmentRole::Informed)],
        );
        check(
            input(TopicCode::Fees, Some("平度市"), true),
            "pingdu",
            &[("qdedu-safety", AssignmentRole::Informed)],
        );
        check(
            input(TopicCode::Other, Some("平度市"), false),
            "qdedu-office",
            &[],
        );
        // Universities are the higher-education office's; vocational colleges stay vocational.
        for (text, lead) in [
            (
                "孩子在青岛一所大学读大二，宿舍空调要另交使用费",
                "qdedu-higher",
            ),
            ("在青高校的研究生宿舍", "qdedu-higher"),
            ("职业学院强制学生去电子厂实习", "qdedu-vocational"),
            ("高职大学生实习工资被克扣", "qdedu-vocational"),
            ("大學宿舍收費", "qdedu-higher"),
        ] {
            let normalised = crate::text::normalise(text);
            check(
                RoutingInput {
                    text: Some(&normalised),
                    ..input(TopicCode::VocationalHigher, Some("市南区"), false)
                },
                lead,
                &[("shinan", AssignmentRole::Informed)],
            );
        }
        check(
            input(TopicCode::VocationalHigher, Some("市南区"), false),
            "qdedu-vocational",
            &[],
        );
        if second_high.is_some() {
            check(
                RoutingInput {
                    school: second_high,
                    ..input(TopicCode::Canteen, Some("崂山区"), false)
                },
                "qdedu-health",
                &[],
            );
        }
    }

    #[test]
    fn unsure_goes_to_triage_and_non_education_is_transferred_out() {
        let units = UnitsDirectory::builtin();
        let catalogue = DispatchCatalogue::builtin(&units);
        let base = RoutingInput {
            topic: TopicCode::Canteen,
            confidence: 0.2,
            education_related: true,
            urgent: false,
            district: None,
            school: None,
            text: None,
        };
        assert!(matches!(
            catalogue.route(&base, &units),
            RoutingDecision::Triage { .. }
        ));
        let other = RoutingInput {
            topic: TopicCode::Other,
            education_related: false,
            confidence: 0.9,
            ..base.clone()
        };
        let unreadable = RoutingInput {
            topic: TopicCode::Other,
            education_related: false,
            confidence: 0.0,
            ..base
        };
        assert!(matches!(
            catalogue.route(&unreadable, &units),
            RoutingDecision::Triage { .. }
        ));
        assert!(matches!(
            catalogue.route(&other, &units),
            RoutingDecision::TransferOut { .. }
        ));
    }

    /// The labelled Qingdao routing set (`seeds/routing/appeals.jsonl`): given each appeal's true
    /// topic, district, school and urgency, the catalogue must pick exactly the expected units.
    /// (Classification errors are measured separately, by `hotline bench routing`.)
    #[test]
    fn the_catalogue_routes_the_labelled_set() {
        let units = UnitsDirectory::builtin();
        let schools = SchoolDirectory::builtin();
        let catalogue = DispatchCatalogue::builtin(&units);
        let mut failures = Vec::new();
        let mut checked = 0;
        for line in include_str!("../../../seeds/routing/appeals.jsonl").lines() {
            let case: serde_json::Value = serde_json::from_str(line).unwrap();
            let decision = case["expected_decision"].as_str().unwrap();
            if decision == "triage" {
                continue; // low confidence is the classifier's call, not the catalogue's
            }
            let topic: TopicCode = case["topic"].as_str().unwrap().parse().unwrap();
            let school = case["school"]
                .as_str()
                .map(|s| schools.by_name(s).expect("school in directory"));
            let normalised = crate::text::normalise(case["text"].as_str().unwrap());
            let input = RoutingInput {
                topic,
                confidence: 0.9,
                education_related: decision != "transfer_out",
                urgent: case["urgent"].as_bool().unwrap(),
                district: case["district"].as_str(),
                school,
                text: Some(&normalised),
            };
            let got = catalogue.route(&input, &units);
            checked += 1;
            let units_of = |role: AssignmentRole, assignments: &[Assignment]| {
                let mut v: Vec<String> = assignments
                    .iter()
                    .filter(|a| a.role == role)
                    .map(|a| a.unit.to_string())
                    .collect();
                v.sort();
                v
            };
            let expected = |key: &str| {
                let mut v: Vec<String> = case[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u.as_str().unwrap().to_owned())
                    .collect();
                v.sort();
                v
            };
            let ok = match (&got, decision) {
                (RoutingDecision::TransferOut { .. }, "transfer_out") => true,
                (RoutingDecision::Route { assignments, .. }, "route") => {
                    units_of(AssignmentRole::Lead, assignments)
                        == vec![case["expected_lead"].as_str().unwrap().to_owned()]
                        && units_of(AssignmentRole::Assisting, assignments)
                            == expected("expected_assisting")
                        && units_of(AssignmentRole::Informed, assignments)
                            == expected("expected_informed")
                }
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{}: expected {decision} {} got {got:?}",
                    case["id"], case["note"]
                ));
            }
        }
        assert!(checked >= 150, "only {checked} labelled appeals");
        assert!(
            failures.is_empty(),
            "{} of {checked} misrouted:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
