//! The chat bodies of docs/rollouts.md#notifications: the same facts as the generic payload —
//! route, revisions, weight, phase, the verdict and its reason in one line, a link to the
//! status page when `admin.public_url` is set — shaped as a Slack message, a Microsoft Teams
//! card or a Discord embed, so a hook URL of those services can be used as is.

use serde_json::{json, Value};

use super::WebhookPayload;
use crate::analysis::Severity;
use crate::config::{WebhookConfig, WebhookFormat, WebhookKind};
use crate::routing::Phase;

/// How a notice reads at a glance: green for a promotion, red for a rollback or a warning,
/// blue for progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tone {
    Good,
    Bad,
    Neutral,
}

impl Tone {
    fn of(payload: &WebhookPayload) -> Tone {
        match (payload.phase, payload.severity) {
            (_, Severity::Warning) | (Phase::Failed, _) => Tone::Bad,
            (Phase::Succeeded, _) => Tone::Good,
            _ => Tone::Neutral,
        }
    }

    fn hex(self) -> &'static str {
        match self {
            Tone::Good => "2EB886",
            Tone::Bad => "D40E0D",
            Tone::Neutral => "1F6FEB",
        }
    }

    /// Slack's named attachment colours.
    fn slack(self) -> &'static str {
        match self {
            Tone::Good => "good",
            Tone::Bad => "danger",
            Tone::Neutral => "#1F6FEB",
        }
    }

    fn rgb(self) -> u32 {
        u32::from_str_radix(self.hex(), 16).unwrap_or(0)
    }
}

/// The headline: the outcome of a `post-rollout` notice ("shop v1.5.0 rolled back"), the event
/// of an `event` notice, and for a gate what it is asked.
fn headline(payload: &WebhookPayload, hook: &WebhookConfig) -> String {
    match (hook.kind, payload.phase) {
        (WebhookKind::PostRollout, Phase::Succeeded) => {
            format!("{} {} promoted", payload.route, payload.revision)
        }
        (WebhookKind::PostRollout, Phase::Failed) => {
            format!("{} {} rolled back", payload.route, payload.revision)
        }
        (WebhookKind::Event, _) => one_line(payload.message.as_deref().unwrap_or("")),
        (kind, phase) => format!(
            "{} {} {} ({})",
            payload.route,
            payload.revision,
            phase.as_str(),
            kind.as_str()
        ),
    }
}

/// The reason in one line: the payload's `reason`, else its message, else the phase.
fn reason(payload: &WebhookPayload) -> String {
    payload
        .reason
        .as_deref()
        .or(payload.message.as_deref())
        .map(one_line)
        .unwrap_or_else(|| payload.phase.as_str().to_owned())
}

/// The first line, so a multi-line message cannot break a chat layout.
fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_owned()
}

/// `(title, value)` facts, in the order every format shows them.
fn facts(payload: &WebhookPayload) -> Vec<(&'static str, String)> {
    let mut facts = vec![
        ("Route", payload.route.clone()),
        ("Canary", payload.revision.clone()),
        ("Primary", payload.primary_revision.clone()),
        ("Weight", format!("{}%", payload.weight)),
        ("Phase", payload.phase.as_str().to_owned()),
    ];
    if payload.failed_checks > 0 {
        facts.push(("Failed checks", payload.failed_checks.to_string()));
    }
    facts.push(("Reason", reason(payload)));
    facts
}

/// The body for `hook.format` (not [`WebhookFormat::Generic`], which is the payload itself).
pub(super) fn chat_body(payload: &WebhookPayload, hook: &WebhookConfig) -> Value {
    let title = headline(payload, hook);
    let tone = Tone::of(payload);
    let link = hook.status_page.as_deref();
    let facts = facts(payload);
    match hook.format {
        WebhookFormat::Generic | WebhookFormat::Slack => {
            let fields: Vec<Value> = facts
                .iter()
                .map(|(title, value)| {
                    json!({"title": title, "value": value, "short": *title != "Reason"})
                })
                .collect();
            let mut attachment = json!({
                "color": tone.slack(),
                "author_name": "canaryd",
                "title": payload.route,
                "text": reason(payload),
                "fields": fields,
            });
            if let Some(link) = link {
                attachment["title_link"] = json!(link);
            }
            json!({"text": &title, "attachments": [attachment]})
        }
        WebhookFormat::MsTeams => {
            let facts: Vec<Value> = facts
                .iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            let mut card = json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "themeColor": tone.hex(),
                "summary": &title,
                "sections": [{
                    "activityTitle": &title,
                    "activitySubtitle": reason(payload),
                    "facts": facts,
                }],
            });
            if let Some(link) = link {
                card["potentialAction"] = json!([{
                    "@type": "OpenUri",
                    "name": "Status page",
                    "targets": [{"os": "default", "uri": link}],
                }]);
            }
            card
        }
        WebhookFormat::Discord => {
            let fields: Vec<Value> = facts
                .iter()
                .map(|(name, value)| {
                    json!({"name": name, "value": value, "inline": *name != "Reason"})
                })
                .collect();
            let mut embed = json!({
                "title": &title,
                "description": reason(payload),
                "color": tone.rgb(),
                "fields": fields,
            });
            if let Some(link) = link {
                embed["url"] = json!(link);
            }
            json!({"username": "canaryd", "embeds": [embed]})
        }
    }
}
