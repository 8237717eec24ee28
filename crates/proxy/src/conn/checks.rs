//! The active health check's verdict on one node, HAProxy-style: a node in
//! rotation leaves after `fall` bad checks in a row, a node out of
//! rotation comes back after `rise` good checks in a row. A good check
//! resets the bad count and a bad check the good count, so a node that
//! alternates never changes state.
//!
//! Pure: no I/O, no clock. The prober (`probe`) feeds it results.

/// What a check result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The node stays as it was.
    None,
    /// The node failed `fall` checks in a row and leaves rotation.
    Down,
    /// The node passed `rise` checks in a row and is back.
    Up,
}

/// One node's run of check results.
#[derive(Debug, Clone)]
pub struct Checks {
    rise: u32,
    fall: u32,
    up: bool,
    run: u32,
}

impl Checks {
    /// A node taken to be up until its checks say otherwise.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            up: true,
            run: 0,
        }
    }

    /// Whether the checks keep the node in rotation.
    #[cfg(test)]
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Counts one check's result.
    pub fn record(&mut self, good: bool) -> Transition {
        if good == self.up {
            // Agrees with the state: any run towards the other state ends.
            self.run = 0;
            return Transition::None;
        }
        self.run += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.run < needed {
            return Transition::None;
        }
        self.run = 0;
        self.up = good;
        if good {
            Transition::Up
        } else {
            Transition::Down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_leaves_after_fall_bad_checks_in_a_row() {
        let mut c = Checks::new(2, 3);
        assert_eq!(c.record(false), Transition::None);
        assert_eq!(c.record(false), Transition::None);
        assert!(c.is_up());
        assert_eq!(c.record(false), Transition::Down);
        assert!(!c.is_up());
        assert_eq!(c.record(false), Transition::None);
    }

    #[test]
    fn a_good_check_resets_the_bad_run() {
        let mut c = Checks::new(2, 3);
        for _ in 0..10 {
            assert_eq!(c.record(false), Transition::None);
            assert_eq!(c.record(false), Transition::None);
            assert_eq!(c.record(true), Transition::None);
        }
        assert!(c.is_up());
    }

    #[test]
    fn a_node_rejoins_after_rise_good_checks_in_a_row() {
        let mut c = Checks::new(2, 1);
        assert_eq!(c.record(false), Transition::Down);
        assert_eq!(c.record(true), Transition::None);
        assert_eq!(c.record(false), Transition::None);
        assert_eq!(c.record(true), Transition::None);
        assert_eq!(c.record(true), Transition::Up);
        assert!(c.is_up());
    }

    #[test]
    fn zero_counts_act_as_one() {
        let mut c = Checks::new(0, 0);
        assert_eq!(c.record(false), Transition::Down);
        assert_eq!(c.record(true), Transition::Up);
    }
}
