//! The 16 topic codes of the contract (`seeds/topics.tsv`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TopicCode {
    Enrolment,
    Kindergarten,
    OffCampusTutoring,
    PrivateSchool,
    Canteen,
    Bullying,
    SchoolSafety,
    Fees,
    TeacherConduct,
    TeacherAffairs,
    AcademicBurden,
    StudentHealth,
    StudentAid,
    VocationalHigher,
    Exams,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown topic code `{0}`")]
pub struct UnknownTopic(pub String);

impl TopicCode {
    pub const ALL: [TopicCode; 16] = [
        TopicCode::Enrolment,
        TopicCode::Kindergarten,
        TopicCode::OffCampusTutoring,
        TopicCode::PrivateSchool,
        TopicCode::Canteen,
        TopicCode::Bullying,
        TopicCode::SchoolSafety,
        TopicCode::Fees,
        TopicCode::TeacherConduct,
        TopicCode::TeacherAffairs,
        TopicCode::AcademicBurden,
        TopicCode::StudentHealth,
        TopicCode::StudentAid,
        TopicCode::VocationalHigher,
        TopicCode::Exams,
        TopicCode::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TopicCode::Enrolment => "enrolment",
            TopicCode::Kindergarten => "kindergarten",
            TopicCode::OffCampusTutoring => "off_campus_tutoring",
            TopicCode::PrivateSchool => "private_school",
            TopicCode::Canteen => "canteen",
            TopicCode::Bullying => "bullying",
            TopicCode::SchoolSafety => "school_safety",
            TopicCode::Fees => "fees",
            TopicCode::TeacherConduct => "teacher_conduct",
            TopicCode::TeacherAffairs => "teacher_affairs",
            TopicCode::AcademicBurden => "academic_burden",
            TopicCode::StudentHealth => "student_health",
            TopicCode::StudentAid => "student_aid",
            TopicCode::VocationalHigher => "vocational_higher",
            TopicCode::Exams => "exams",
            TopicCode::Other => "other",
        }
    }
}

impl fmt::Display for TopicCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TopicCode {
    type Err = UnknownTopic;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TopicCode::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTopic(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_contract_file() {
        let codes: Vec<&str> = crate::seeds::TOPICS_TSV_FOR_TESTS
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split('\t').next().unwrap())
            .collect();
        let ours: Vec<&str> = TopicCode::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(codes, ours);
        for code in codes {
            assert_eq!(code.parse::<TopicCode>().unwrap().as_str(), code);
        }
        assert!("canteens".parse::<TopicCode>().is_err());
    }
}
