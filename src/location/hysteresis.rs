//! One interface's judgement over successive probe rounds: its state changes
//! only when two consecutive rounds agree on the other answer, so that one
//! lost handshake does not take a domain interface to public (nor one lucky
//! answer the reverse). A link that goes down is not a probe result but a fact:
//! the interface is undecided at once, and the network it comes back on is
//! judged anew. From undecided, either answer needs two rounds too: the
//! interface is public meanwhile, which is what a new network deserves. Pure.

use super::State;

/// What one round found over an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A probe authenticated the domain.
    Domain,
    /// None did.
    Other,
}

impl Answer {
    fn state(self) -> State {
        match self {
            Answer::Domain => State::Domain,
            Answer::Other => State::NotDomain,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judge {
    pub state: State,
    /// An answer that disagrees with `state`, waiting for a second.
    pending: Option<Answer>,
}

impl Judge {
    /// Takes a round's answer; true if the state changed.
    pub fn take(&mut self, answer: Answer) -> bool {
        if answer.state() == self.state {
            self.pending = None;
            return false;
        }
        if self.pending == Some(answer) {
            self.state = answer.state();
            self.pending = None;
            return true;
        }
        self.pending = Some(answer);
        false
    }

    /// Whether an answer waits for its confirmation (the next round should
    /// come at once, not after the interval).
    pub fn unconfirmed(&self) -> bool {
        self.pending.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_needs_two_agreeing_rounds() {
        let mut j = Judge::default();
        assert_eq!(j.state, State::Undecided);
        assert!(!j.take(Answer::Domain));
        assert!(j.unconfirmed());
        assert!(j.take(Answer::Domain));
        assert_eq!((j.state, j.unconfirmed()), (State::Domain, false));
        // One failed round is not enough, and an agreeing one clears it.
        assert!(!j.take(Answer::Other));
        assert!(!j.take(Answer::Domain));
        assert!(!j.take(Answer::Other));
        assert_eq!(j.state, State::Domain);
        assert!(j.take(Answer::Other));
        assert_eq!(j.state, State::NotDomain);
    }

    #[test]
    fn alternating_answers_change_nothing() {
        let mut j = Judge::default();
        for answer in [Answer::Domain, Answer::Other, Answer::Domain, Answer::Other] {
            assert!(!j.take(answer));
        }
        assert_eq!(j.state, State::Undecided);
        // The last answer waits for its second.
        assert!(j.take(Answer::Other));
        assert_eq!(j.state, State::NotDomain);
    }
}
