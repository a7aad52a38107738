//! Operator commands (`canaryd promote|abort|pause|resume|retry`, docs/rollouts.md#operator-commands).
//!
//! | command | allowed in | result |
//! |---|---|---|
//! | `promote` | Waiting, Progressing, Paused, WaitingPromotion | Succeeded, weight 100 |
//! | `abort` | Waiting, Progressing, Paused, WaitingPromotion | Failed, weight 0 (abort only ever lowers the weight, so not from Succeeded) |
//! | `pause` | Waiting, Progressing, WaitingPromotion | Paused, weight frozen, remembers the phase |
//! | `resume` | Paused | the phase it was paused in |
//! | `retry` | Failed | the first step again: Waiting if `confirm-rollout` is configured, else Progressing |
//!
//! Anything else is [`CommandError::NotAllowed`] (HTTP 409) and changes nothing.

use std::fmt;
use std::time::SystemTime;

use crate::routing::Phase;

use crate::analysis::machine::decision::RollbackReason;
use crate::analysis::machine::events::{unix_seconds, Event};
use crate::analysis::machine::params::Params;
use crate::analysis::machine::rollout::{ResumeTo, Rollout};

/// An operator command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Skip the rest of the analysis and promote now.
    Promote,
    /// Roll back now.
    Abort,
    /// Freeze weight and analysis.
    Pause,
    /// Continue a paused rollout.
    Resume,
    /// Roll a Failed revision out again from the first step.
    Retry,
}

impl Command {
    /// Every command.
    pub const ALL: [Command; 5] = [
        Command::Promote,
        Command::Abort,
        Command::Pause,
        Command::Resume,
        Command::Retry,
    ];

    /// The name used by the CLI and the API path.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Promote => "promote",
            Command::Abort => "abort",
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Retry => "retry",
        }
    }

    /// Whether the command ends the rollout (promote, abort): the `post-rollout` hooks are
    /// told.
    pub fn finishes(self) -> bool {
        matches!(self, Command::Promote | Command::Abort)
    }

    /// The phases this command is allowed in (see the module table).
    pub fn allowed_in(self) -> &'static [Phase] {
        match self {
            Command::Promote => &[
                Phase::Waiting,
                Phase::Progressing,
                Phase::Paused,
                Phase::WaitingPromotion,
                Phase::Baking,
            ],
            // Succeeded: the old primary still runs until `primary.revision` changes (then
            // the rollout is Idle), so going back to it is still instant.
            Command::Abort => &[
                Phase::Waiting,
                Phase::Progressing,
                Phase::Paused,
                Phase::WaitingPromotion,
                Phase::Baking,
                Phase::Succeeded,
            ],
            Command::Pause => &[Phase::Waiting, Phase::Progressing, Phase::WaitingPromotion],
            Command::Resume => &[Phase::Paused],
            Command::Retry => &[Phase::Failed],
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command that does not apply to the rollout's phase; the admin API answers 409.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// E.g. "cannot promote: route is Failed".
    #[error("cannot {command}: route is {phase}")]
    NotAllowed {
        /// The refused command.
        command: Command,
        /// The phase it was refused in.
        phase: Phase,
    },
}

impl CommandError {
    /// The phase that refused the command.
    pub fn phase(&self) -> Phase {
        match self {
            CommandError::NotAllowed { phase, .. } => *phase,
        }
    }
}

// === impl Rollout: commands ===

impl Rollout {
    /// Run `command`; its events.
    pub fn apply(
        &mut self,
        command: Command,
        params: &Params,
        now: SystemTime,
    ) -> Result<Vec<Event>, CommandError> {
        match command {
            Command::Promote => self.promote(now),
            Command::Abort => self.abort(now),
            Command::Pause => self.pause(now),
            Command::Resume => self.resume(now),
            Command::Retry => self.retry(params, now),
        }
    }

    /// Promote now, skipping the rest of the analysis.
    pub fn promote(&mut self, now: SystemTime) -> Result<Vec<Event>, CommandError> {
        self.allow(Command::Promote)?;
        let mut events = vec![Event::info(
            &self.route,
            now,
            format!("Manual promotion of {} requested", self.route),
        )];
        // The operator's promotion is final: no bake, and a bake in progress ends.
        self.bake_for = None;
        self.promote_now(now, &mut events);
        self.reason = Some("promoted by operator".to_owned());
        Ok(events)
    }

    /// Roll back now: phase Failed, weight 0.
    pub fn abort(&mut self, now: SystemTime) -> Result<Vec<Event>, CommandError> {
        self.allow(Command::Abort)?;
        let mut events = Vec::new();
        self.roll_back(RollbackReason::Aborted, None, now, &mut events);
        Ok(events)
    }

    /// Freeze the weight and the analysis.
    pub fn pause(&mut self, now: SystemTime) -> Result<Vec<Event>, CommandError> {
        self.allow(Command::Pause)?;
        self.paused_from = Some(match self.phase {
            Phase::Waiting => ResumeTo::Waiting,
            Phase::WaitingPromotion => ResumeTo::WaitingPromotion,
            _ => ResumeTo::Progressing,
        });
        self.phase = Phase::Paused;
        self.pending = None;
        self.updated_at = unix_seconds(now);
        Ok(vec![Event::info(
            &self.route,
            now,
            format!(
                "Canary analysis of {} paused at weight {}",
                self.route,
                self.weight()
            ),
        )])
    }

    /// Continue a paused rollout in the phase it was paused in.
    pub fn resume(&mut self, now: SystemTime) -> Result<Vec<Event>, CommandError> {
        self.allow(Command::Resume)?;
        // A state file without the remembered phase resumes the checks, the safe default:
        // they re-ask every gate that still matters.
        self.phase = self
            .paused_from
            .take()
            .map_or(Phase::Progressing, ResumeTo::phase);
        self.updated_at = unix_seconds(now);
        Ok(vec![Event::info(
            &self.route,
            now,
            format!(
                "Canary analysis of {} resumed at weight {}",
                self.route,
                self.weight()
            ),
        )])
    }

    /// Roll a Failed revision out again from the first step.
    pub fn retry(&mut self, params: &Params, now: SystemTime) -> Result<Vec<Event>, CommandError> {
        self.allow(Command::Retry)?;
        let mut events = vec![Event::info(
            &self.route,
            now,
            format!(
                "Retrying {} {} from the first step",
                self.route, self.revision
            ),
        )];
        self.start(params, now, &mut events);
        Ok(events)
    }

    fn allow(&self, command: Command) -> Result<(), CommandError> {
        if command.allowed_in().contains(&self.phase) {
            Ok(())
        } else {
            Err(CommandError::NotAllowed {
                command,
                phase: self.phase,
            })
        }
    }
}
