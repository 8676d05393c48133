//! The case state machine. A case is the matter a unit handles; every change is one of these
//! commands, and an illegal one is a typed error, never a silent no-op.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// Waiting for an operator: low confidence or no rule.
    Triage,
    Routed,
    /// 签收
    Accepted,
    /// First contact with the citizen made.
    Contacted,
    /// 办结
    Resolved,
    /// 回访 recorded.
    CallbackDone,
    Closed,
    /// Sent back by the unit; the router or a manager assigns it again.
    Returned,
    /// Re-handling after an unsatisfied callback.
    Reopened,
    /// Not an education matter: sent back to the 12345 platform.
    TransferredOut,
    /// A repeat: its appeals were linked to another case, which carries on.
    Linked,
}

impl CaseState {
    pub const ALL: [CaseState; 11] = [
        CaseState::Triage,
        CaseState::Routed,
        CaseState::Accepted,
        CaseState::Contacted,
        CaseState::Resolved,
        CaseState::CallbackDone,
        CaseState::Closed,
        CaseState::Returned,
        CaseState::Reopened,
        CaseState::TransferredOut,
        CaseState::Linked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseState::Triage => "triage",
            CaseState::Routed => "routed",
            CaseState::Accepted => "accepted",
            CaseState::Contacted => "contacted",
            CaseState::Resolved => "resolved",
            CaseState::CallbackDone => "callback_done",
            CaseState::Closed => "closed",
            CaseState::Returned => "returned",
            CaseState::Reopened => "reopened",
            CaseState::TransferredOut => "transferred_out",
            CaseState::Linked => "linked",
        }
    }

    /// States in which a unit still owes work.
    pub fn is_open_with_unit(self) -> bool {
        matches!(
            self,
            CaseState::Routed | CaseState::Accepted | CaseState::Contacted | CaseState::Reopened
        )
    }
}

impl fmt::Display for CaseState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown case state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for CaseState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CaseState::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// Satisfaction grades recorded at callback, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Satisfaction {
    /// 非常满意
    VerySatisfied,
    /// 满意
    Satisfied,
    /// 基本满意
    Neutral,
    /// 不满意
    Dissatisfied,
    /// 非常不满意
    VeryDissatisfied,
}

impl Satisfaction {
    pub fn as_str(self) -> &'static str {
        match self {
            Satisfaction::VerySatisfied => "very_satisfied",
            Satisfaction::Satisfied => "satisfied",
            Satisfaction::Neutral => "neutral",
            Satisfaction::Dissatisfied => "dissatisfied",
            Satisfaction::VeryDissatisfied => "very_dissatisfied",
        }
    }

    /// The two lowest grades send the case back for re-handling.
    pub fn reopens(self) -> bool {
        matches!(
            self,
            Satisfaction::Dissatisfied | Satisfaction::VeryDissatisfied
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnReason {
    NotOurJurisdiction,
    WrongDistrict,
    WrongTopic,
    Duplicate,
    Other,
}

impl ReturnReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnReason::NotOurJurisdiction => "not_our_jurisdiction",
            ReturnReason::WrongDistrict => "wrong_district",
            ReturnReason::WrongTopic => "wrong_topic",
            ReturnReason::Duplicate => "duplicate",
            ReturnReason::Other => "other",
        }
    }
}

/// Everything that can happen to a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseCommand {
    /// Operator or manager assigns a triaged or returned case; the router re-routes a returned one.
    Assign,
    Accept,
    Return,
    Contact,
    Resolve,
    /// The caller's grade, or `None` when they could not be reached.
    RecordCallback(Option<Satisfaction>),
    Close,
    /// A manager reopens a closed case.
    Reopen,
    Extend,
    Escalate,
    TransferOut,
    /// This case repeats another: its appeals move there and it ends.
    LinkAsRepeat,
    /// Another case's appeals joined this one (it stays as it is).
    AcceptRepeat,
    /// An assisting unit, a school the case was forwarded to, or the lead adds its part of the
    /// work; the state stays.
    Contribute,
    /// The lead district bureau forwards the case to one of its schools (二级派单) and stays
    /// accountable; the state stays.
    Forward,
}

impl CaseCommand {
    pub fn name(self) -> &'static str {
        match self {
            CaseCommand::Assign => "assign",
            CaseCommand::Accept => "accept",
            CaseCommand::Return => "return",
            CaseCommand::Contact => "contact",
            CaseCommand::Resolve => "resolve",
            CaseCommand::RecordCallback(_) => "record_callback",
            CaseCommand::Close => "close",
            CaseCommand::Reopen => "reopen",
            CaseCommand::Extend => "extend",
            CaseCommand::Escalate => "escalate",
            CaseCommand::TransferOut => "transfer_out",
            CaseCommand::LinkAsRepeat => "link_as_repeat",
            CaseCommand::AcceptRepeat => "accept_repeat",
            CaseCommand::Contribute => "contribute",
            CaseCommand::Forward => "forward",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {command} a case that is {state}")]
pub struct IllegalTransition {
    pub state: CaseState,
    pub command: &'static str,
}

/// The state after `command`, or why it is not allowed. Extensions and escalations are side
/// transitions: they are recorded in the history and keep the state.
pub fn transition(state: CaseState, command: CaseCommand) -> Result<CaseState, IllegalTransition> {
    use CaseCommand as C;
    use CaseState as S;
    let next = match (state, command) {
        (S::Triage | S::Returned, C::Assign) => S::Routed,
        (S::Triage | S::Returned | S::Routed, C::TransferOut) => S::TransferredOut,
        (S::Routed, C::Accept) => S::Accepted,
        (S::Routed | S::Accepted, C::Return) => S::Returned,
        (S::Accepted | S::Reopened, C::Contact) => S::Contacted,
        (S::Contacted | S::Reopened, C::Resolve) => S::Resolved,
        (S::Resolved, C::RecordCallback(Some(grade))) if grade.reopens() => S::Reopened,
        (S::Resolved, C::RecordCallback(_)) => S::CallbackDone,
        // Another caller of the same case (a repeat joined it): each is called back.
        (S::CallbackDone, C::RecordCallback(Some(grade))) if grade.reopens() => S::Reopened,
        (S::CallbackDone, C::RecordCallback(_)) => S::CallbackDone,
        (S::CallbackDone, C::Close) => S::Closed,
        (S::Closed | S::CallbackDone, C::Reopen) => S::Reopened,
        (s @ (S::Routed | S::Accepted | S::Contacted | S::Reopened), C::Extend) => s,
        (s, C::Escalate) if s.is_open_with_unit() || s == S::Triage || s == S::Returned => s,
        // Only a case nobody has resolved yet can be folded into another.
        (S::Triage | S::Routed | S::Returned | S::Accepted | S::Contacted, C::LinkAsRepeat) => {
            S::Linked
        }
        // A closed case owes nobody anything any more, so an appeal folded into it would never be
        // called back: a manager reopens it first.
        (s, C::AcceptRepeat) if !matches!(s, S::TransferredOut | S::Linked | S::Closed) => s,
        (s, C::Contribute | C::Forward) if s.is_open_with_unit() => s,
        (state, command) => {
            return Err(IllegalTransition {
                state,
                command: command.name(),
            })
        }
    };
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CaseCommand as C;
    use CaseState as S;

    /// Given a state, when a command arrives, then the next state (or the refusal).
    fn check(given: S, when: C, then: Result<S, ()>) {
        let got = transition(given, when).map_err(|_| ());
        assert_eq!(got, then, "given {given}, when {}", when.name());
    }

    #[test]
    fn the_happy_path() {
        let mut state = S::Routed;
        for (command, expected) in [
            (C::Accept, S::Accepted),
            (C::Contact, S::Contacted),
            (C::Resolve, S::Resolved),
            (
                C::RecordCallback(Some(Satisfaction::Satisfied)),
                S::CallbackDone,
            ),
            // A caller not reached: the attempt is recorded, nothing reopens.
            (C::RecordCallback(None), S::CallbackDone),
            (C::Close, S::Closed),
        ] {
            state = transition(state, command).unwrap();
            assert_eq!(state, expected);
        }
    }

    #[test]
    fn legal_side_transitions() {
        check(S::Triage, C::Assign, Ok(S::Routed));
        check(S::Returned, C::Assign, Ok(S::Routed));
        check(S::Triage, C::TransferOut, Ok(S::TransferredOut));
        check(S::Routed, C::TransferOut, Ok(S::TransferredOut));
        check(S::Accepted, C::Contribute, Ok(S::Accepted));
        check(S::Reopened, C::Contribute, Ok(S::Reopened));
        check(S::Resolved, C::Contribute, Err(()));
        check(S::Returned, C::Contribute, Err(()));
        check(S::Routed, C::Return, Ok(S::Returned));
        check(S::Accepted, C::Return, Ok(S::Returned));
        check(
            S::Resolved,
            C::RecordCallback(Some(Satisfaction::VeryDissatisfied)),
            Ok(S::Reopened),
        );
        check(
            S::Resolved,
            C::RecordCallback(Some(Satisfaction::Dissatisfied)),
            Ok(S::Reopened),
        );
        check(
            S::Resolved,
            C::RecordCallback(Some(Satisfaction::Neutral)),
            Ok(S::CallbackDone),
        );
        check(S::Reopened, C::Contact, Ok(S::Contacted));
        check(S::Reopened, C::Resolve, Ok(S::Resolved));
        check(S::Closed, C::Reopen, Ok(S::Reopened));
        check(S::Resolved, C::RecordCallback(None), Ok(S::CallbackDone));
        check(S::Accepted, C::Extend, Ok(S::Accepted));
        check(S::Contacted, C::Escalate, Ok(S::Contacted));
        check(S::Triage, C::Escalate, Ok(S::Triage));
        check(S::Routed, C::LinkAsRepeat, Ok(S::Linked));
        check(S::Contacted, C::LinkAsRepeat, Ok(S::Linked));
        check(S::Resolved, C::AcceptRepeat, Ok(S::Resolved));
        check(S::CallbackDone, C::AcceptRepeat, Ok(S::CallbackDone));
    }

    #[test]
    fn illegal_transitions_are_refused() {
        check(S::Triage, C::Accept, Err(()));
        check(S::Routed, C::Resolve, Err(()));
        check(S::Accepted, C::Resolve, Err(()));
        check(S::Contacted, C::Return, Err(()));
        check(S::Closed, C::Accept, Err(()));
        check(S::Closed, C::Escalate, Err(()));
        check(S::TransferredOut, C::Assign, Err(()));
        check(S::Resolved, C::Extend, Err(()));
        check(
            S::Routed,
            C::RecordCallback(Some(Satisfaction::Satisfied)),
            Err(()),
        );
        check(S::CallbackDone, C::Resolve, Err(()));
        check(
            S::CallbackDone,
            C::RecordCallback(Some(Satisfaction::Satisfied)),
            Ok(S::CallbackDone),
        );
        check(
            S::CallbackDone,
            C::RecordCallback(Some(Satisfaction::Dissatisfied)),
            Ok(S::Reopened),
        );
        check(
            S::Closed,
            C::RecordCallback(Some(Satisfaction::Satisfied)),
            Err(()),
        );
        check(S::Resolved, C::LinkAsRepeat, Err(()));
        check(S::Linked, C::Assign, Err(()));
        check(S::Linked, C::AcceptRepeat, Err(()));
        check(S::TransferredOut, C::AcceptRepeat, Err(()));
        check(S::Closed, C::AcceptRepeat, Err(()));
        let err = transition(S::Closed, C::Accept).unwrap_err();
        assert_eq!(err.to_string(), "cannot accept a case that is closed");
    }

    #[test]
    fn states_round_trip_through_text() {
        for state in S::ALL {
            assert_eq!(state.as_str().parse::<S>().unwrap(), state);
        }
    }
}
