//! What happens after a unit returns a case (退单): re-route by the reason it gave, never back to a
//! unit that already returned it, and stop for a manager's ruling once the case has bounced
//! `returns_before_ruling` times (no ping-pong). Pure, like the routing it builds on.

use crate::case::ReturnReason;
use crate::district::DistrictMatcher;
use crate::routing::{
    Assignment, AssignmentRole, DispatchCatalogue, RoutingDecision, RoutingInput,
};
use crate::schools::School;
use crate::text::normalise;
use crate::topic::TopicCode;
use crate::units::{UnitCode, UnitsDirectory};
use serde::Serialize;
use uuid::Uuid;

/// A returned case, as the router sees it.
#[derive(Debug, Clone)]
pub struct ReturnedCase<'a> {
    pub reason: ReturnReason,
    pub note: &'a str,
    /// Lead units that returned the case so far, this return included.
    pub returned_by: &'a [UnitCode],
    pub topic: TopicCode,
    /// The classifier's other candidate topics, best first.
    pub alternatives: &'a [TopicCode],
    pub district: Option<&'a str>,
    pub school: Option<&'a School>,
    pub urgent: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum AfterReturn {
    /// Send the case to other units, possibly under another topic or district.
    Reroute {
        topic: TopicCode,
        district: Option<String>,
        assignments: Vec<Assignment>,
        rule: String,
        explanation: String,
    },
    /// A manager decides; for a duplicate, `proposed_link` is the case the unit named.
    Ruling {
        rule: String,
        explanation: String,
        proposed_link: Option<Uuid>,
    },
}

impl AfterReturn {
    fn ruling(rule: &str, explanation: impl Into<String>) -> Self {
        AfterReturn::Ruling {
            rule: rule.to_owned(),
            explanation: explanation.into(),
            proposed_link: None,
        }
    }
}

impl DispatchCatalogue {
    pub fn after_return(
        &self,
        case: &ReturnedCase<'_>,
        units: &UnitsDirectory,
        districts: &DistrictMatcher,
    ) -> AfterReturn {
        let returned_by = || {
            case.returned_by
                .iter()
                .map(UnitCode::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if case.returned_by.len() >= self.returns_before_ruling() {
            return AfterReturn::ruling(
                "return/ping-pong",
                format!(
                    "returned {} times (by {}); a manager rules who handles it",
                    case.returned_by.len(),
                    returned_by()
                ),
            );
        }
        // The classification was accepted once; a return is no reason to triage it.
        let input = RoutingInput::settled(case.topic, case.urgent, case.district, case.school);
        match case.reason {
            ReturnReason::Duplicate => AfterReturn::Ruling {
                rule: "return/duplicate".into(),
                explanation: match first_case_id(case.note) {
                    Some(id) => {
                        format!("returned as a duplicate of case {id}; a manager confirms the link")
                    }
                    None => {
                        "returned as a duplicate without naming the case; a manager finds it".into()
                    }
                },
                proposed_link: first_case_id(case.note),
            },
            ReturnReason::Other => AfterReturn::ruling(
                "return/other",
                "returned for a reason outside the categories; a manager reads the note",
            ),
            ReturnReason::NotOurJurisdiction => self.reroute(
                &input,
                units,
                case.returned_by,
                "return/not-our-jurisdiction",
            ),
            ReturnReason::WrongDistrict => {
                let named = districts
                    .find_all(&normalise(case.note))
                    .into_iter()
                    .find(|d| Some(*d) != case.district);
                match named {
                    Some(district) => self.reroute(
                        &RoutingInput {
                            district: Some(district),
                            ..input
                        },
                        units,
                        case.returned_by,
                        "return/wrong-district",
                    ),
                    None => AfterReturn::ruling(
                        "return/wrong-district-unnamed",
                        "returned as the wrong district, but the note names no other district",
                    ),
                }
            }
            ReturnReason::WrongTopic => {
                // The next candidate topic whose natural lead has not already returned the case.
                for &topic in case.alternatives.iter().filter(|t| **t != case.topic) {
                    let candidate = RoutingInput {
                        topic,
                        ..input.clone()
                    };
                    if let RoutingDecision::Route { assignments, .. } =
                        self.route(&candidate, units)
                    {
                        let lead = assignments.iter().find(|a| a.role == AssignmentRole::Lead);
                        if lead.is_some_and(|l| !case.returned_by.contains(&l.unit)) {
                            return self.reroute(
                                &candidate,
                                units,
                                case.returned_by,
                                "return/wrong-topic",
                            );
                        }
                    }
                }
                AfterReturn::ruling(
                    "return/wrong-topic-no-alternative",
                    "returned as the wrong topic and no other candidate topic leads elsewhere",
                )
            }
        }
    }

    /// Routes as usual, then takes out the units that returned the case; if the lead was one of
    /// them, an assisting unit, else the topic's department, else the fallback unit leads.
    fn reroute(
        &self,
        input: &RoutingInput<'_>,
        units: &UnitsDirectory,
        excluded: &[UnitCode],
        rule_prefix: &str,
    ) -> AfterReturn {
        let RoutingDecision::Route {
            assignments,
            rule,
            explanation,
        } = self.route(input, units)
        else {
            return AfterReturn::ruling(
                "return/no-route",
                "the dispatch catalogue has no unit for this case",
            );
        };
        let mut kept: Vec<Assignment> = assignments
            .into_iter()
            .filter(|a| !excluded.contains(&a.unit))
            .collect();
        let mut explanation = explanation;
        if !kept.iter().any(|a| a.role == AssignmentRole::Lead) {
            let next = kept
                .iter()
                .filter(|a| a.role == AssignmentRole::Assisting)
                .map(|a| a.unit.clone())
                .chain(self.department_for(input.topic).cloned())
                .chain(std::iter::once(self.fallback_unit().clone()))
                .find(|u| !excluded.contains(u));
            let Some(next) = next else {
                return AfterReturn::ruling(
                    "return/no-unit-left",
                    "every unit that could lead has returned the case",
                );
            };
            kept.retain(|a| a.unit != next);
            explanation = format!("{explanation}; that unit returned it, so {next} leads");
            kept.insert(
                0,
                Assignment {
                    unit: next,
                    role: AssignmentRole::Lead,
                },
            );
        }
        AfterReturn::Reroute {
            topic: input.topic,
            district: input.district.map(str::to_owned),
            assignments: kept,
            rule: format!("{rule_prefix}:{rule}"),
            explanation,
        }
    }
}

/// The first case id written in a note ("重复件，见 0190…").
fn first_case_id(note: &str) -> Option<Uuid> {
    note.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .filter(|token| token.len() == 36)
        .find_map(|token| Uuid::parse_str(token).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schools::SchoolDirectory;

    struct Given {
        reason: ReturnReason,
        note: &'static str,
        returned_by: &'static [&'static str],
        topic: TopicCode,
        alternatives: &'static [TopicCode],
        district: Option<&'static str>,
    }

    /// Expected: (rule prefix, lead unit or None for a ruling, topic, district).
    type Expected = (
        &'static str,
        Option<&'static str>,
        TopicCode,
        Option<&'static str>,
    );

    #[test]
    fn reroutes_by_reason_and_stops_for_a_ruling() {
        let units = UnitsDirectory::builtin();
        let catalogue = DispatchCatalogue::builtin(&units);
        let districts = DistrictMatcher::new(&units);
        let duplicate_of = "0190d1c4-6a2b-7c3d-8e4f-5a6b7c8d9e0f";
        let cases: Vec<(&str, Given, Expected)> = vec![
            (
                "wrong district named in the note goes to that district's bureau",
                Given {
                    reason: ReturnReason::WrongDistrict,
                    note: "该校在李沧区，不属我区",
                    returned_by: &["shinan"],
                    topic: TopicCode::Canteen,
                    alternatives: &[],
                    district: Some("市南区"),
                },
                (
                    "return/wrong-district:",
                    Some("licang"),
                    TopicCode::Canteen,
                    Some("李沧区"),
                ),
            ),
            (
                "wrong district by alias",
                Given {
                    reason: ReturnReason::WrongDistrict,
                    note: "学校在西海岸新区",
                    returned_by: &["jiaozhou"],
                    topic: TopicCode::Enrolment,
                    alternatives: &[],
                    district: Some("胶州市"),
                },
                (
                    "return/wrong-district:",
                    Some("xihaian"),
                    TopicCode::Enrolment,
                    Some("黄岛区"),
                ),
            ),
            (
                "wrong district naming no district needs a ruling",
                Given {
                    reason: ReturnReason::WrongDistrict,
                    note: "不是我区的学校",
                    returned_by: &["shinan"],
                    topic: TopicCode::Canteen,
                    alternatives: &[],
                    district: Some("市南区"),
                },
                (
                    "return/wrong-district-unnamed",
                    None,
                    TopicCode::Canteen,
                    Some("市南区"),
                ),
            ),
            (
                "not our jurisdiction: the district bureau is excluded, the department leads",
                Given {
                    reason: ReturnReason::NotOurJurisdiction,
                    note: "民办机构由市局审批",
                    returned_by: &["jimo"],
                    topic: TopicCode::OffCampusTutoring,
                    alternatives: &[],
                    district: Some("即墨区"),
                },
                (
                    "return/not-our-jurisdiction:",
                    Some("qdedu-private"),
                    TopicCode::OffCampusTutoring,
                    Some("即墨区"),
                ),
            ),
            (
                "not our jurisdiction from a department: the fallback unit leads",
                Given {
                    reason: ReturnReason::NotOurJurisdiction,
                    note: "非本处室职责",
                    returned_by: &["qdedu-exams"],
                    topic: TopicCode::Exams,
                    alternatives: &[],
                    district: None,
                },
                (
                    "return/not-our-jurisdiction:",
                    Some("qdedu-office"),
                    TopicCode::Exams,
                    None,
                ),
            ),
            (
                "wrong topic takes the next candidate topic",
                Given {
                    reason: ReturnReason::WrongTopic,
                    note: "这是收费问题，不是考试",
                    returned_by: &["qdedu-exams"],
                    topic: TopicCode::Exams,
                    alternatives: &[TopicCode::Exams, TopicCode::Fees, TopicCode::Canteen],
                    district: Some("崂山区"),
                },
                (
                    "return/wrong-topic:",
                    Some("laoshan"),
                    TopicCode::Fees,
                    Some("崂山区"),
                ),
            ),
            (
                "wrong topic skips candidates whose lead already returned it",
                Given {
                    reason: ReturnReason::WrongTopic,
                    note: "非食堂问题",
                    returned_by: &["laoshan"],
                    topic: TopicCode::Canteen,
                    alternatives: &[TopicCode::Fees, TopicCode::Exams],
                    district: Some("崂山区"),
                },
                (
                    "return/wrong-topic:",
                    Some("qdedu-exams"),
                    TopicCode::Exams,
                    Some("崂山区"),
                ),
            ),
            (
                "wrong topic with no usable candidate needs a ruling",
                Given {
                    reason: ReturnReason::WrongTopic,
                    note: "分类错误",
                    returned_by: &["laoshan"],
                    topic: TopicCode::Canteen,
                    alternatives: &[TopicCode::Fees],
                    district: Some("崂山区"),
                },
                (
                    "return/wrong-topic-no-alternative",
                    None,
                    TopicCode::Canteen,
                    Some("崂山区"),
                ),
            ),
            (
                "the second return stops the bouncing",
                Given {
                    reason: ReturnReason::WrongDistrict,
                    note: "在市北区",
                    returned_by: &["shinan", "licang"],
                    topic: TopicCode::Canteen,
                    alternatives: &[],
                    district: Some("李沧区"),
                },
                ("return/ping-pong", None, TopicCode::Canteen, Some("李沧区")),
            ),
            (
                "a duplicate is proposed for linking",
                Given {
                    reason: ReturnReason::Duplicate,
                    note: "重复件，见 0190d1c4-6a2b-7c3d-8e4f-5a6b7c8d9e0f。",
                    returned_by: &["shinan"],
                    topic: TopicCode::Canteen,
                    alternatives: &[],
                    district: Some("市南区"),
                },
                ("return/duplicate", None, TopicCode::Canteen, Some("市南区")),
            ),
            (
                "other reasons are read by a manager",
                Given {
                    reason: ReturnReason::Other,
                    note: "信息不全",
                    returned_by: &["shinan"],
                    topic: TopicCode::Canteen,
                    alternatives: &[],
                    district: Some("市南区"),
                },
                ("return/other", None, TopicCode::Canteen, Some("市南区")),
            ),
        ];
        for (name, given, (rule_prefix, lead, topic, district)) in cases {
            let returned_by: Vec<UnitCode> = given
                .returned_by
                .iter()
                .map(|u| UnitCode::parse(u).expect("unit code"))
                .collect();
            let decision = catalogue.after_return(
                &ReturnedCase {
                    reason: given.reason,
                    note: given.note,
                    returned_by: &returned_by,
                    topic: given.topic,
                    alternatives: given.alternatives,
                    district: given.district,
                    school: None,
                    urgent: false,
                },
                &units,
                &districts,
            );
            match (&decision, lead) {
                (
                    AfterReturn::Reroute {
                        topic: got_topic,
                        district: got_district,
                        assignments,
                        rule,
                        ..
                    },
                    Some(lead),
                ) => {
                    assert!(rule.starts_with(rule_prefix), "{name}: {rule}");
                    assert_eq!(*got_topic, topic, "{name}");
                    assert_eq!(got_district.as_deref(), district, "{name}");
                    let leads: Vec<&str> = assignments
                        .iter()
                        .filter(|a| a.role == AssignmentRole::Lead)
                        .map(|a| a.unit.as_str())
                        .collect();
                    assert_eq!(leads, [lead], "{name}: {assignments:?}");
                    for unit in &returned_by {
                        assert!(
                            assignments.iter().all(|a| a.unit != *unit),
                            "{name}: {unit} returned it"
                        );
                    }
                }
                (
                    AfterReturn::Ruling {
                        rule,
                        proposed_link,
                        ..
                    },
                    None,
                ) => {
                    assert_eq!(rule, rule_prefix, "{name}");
                    let expected_link = (given.reason == ReturnReason::Duplicate)
                        .then(|| Uuid::parse_str(duplicate_of).expect("uuid"));
                    assert_eq!(*proposed_link, expected_link, "{name}");
                }
                (other, _) => panic!("{name}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn a_directly_administered_school_stays_with_the_department_after_a_district_return() {
        let units = UnitsDirectory::builtin();
        let schools = SchoolDirectory::builtin();
        let catalogue = DispatchCatalogue::builtin(&units);
        let districts = DistrictMatcher::new(&units);
        let Some(school) = schools.by_name("山东省青岛第二中学") else {
            return;
        };
        let returned_by = [UnitCode::parse("qdedu-health").expect("code")];
        let decision = catalogue.after_return(
            &ReturnedCase {
                reason: ReturnReason::NotOurJurisdiction,
                note: "",
                returned_by: &returned_by,
                topic: TopicCode::Canteen,
                alternatives: &[],
                district: Some("崂山区"),
                school: Some(school),
                urgent: false,
            },
            &units,
            &districts,
        );
        let AfterReturn::Reroute { assignments, .. } = decision else {
            panic!("rerouted: {decision:?}");
        };
        assert!(assignments
            .iter()
            .any(|a| a.role == AssignmentRole::Lead && a.unit.as_str() == "qdedu-office"));
    }

    #[test]
    fn case_ids_in_notes() {
        assert_eq!(first_case_id("无"), None);
        assert_eq!(
            first_case_id("见 not-a-uuid-at-all-but-36-chars-long!!"),
            None
        );
        assert!(first_case_id("重复：0190d1c4-6a2b-7c3d-8e4f-5a6b7c8d9e0f").is_some());
    }
}
