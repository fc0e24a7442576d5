//! What a credential may grant: a key minted through the admin API is bounded
//! by its creator in every limit a key carries (scopes, models, rate,
//! lifetime), so an admin can never hand out more than it holds. Each new
//! per-key limit (MCP servers and tools next) gets its rule here.

use super::{Principal, SCOPE_SUPERADMIN};

/// Why a requested key exceeds its creator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GrantError {
    /// The request field at fault.
    pub param: &'static str,
    /// What is wrong, safe to show.
    pub message: String,
}

fn refuse(param: &'static str, message: String) -> GrantError {
    GrantError { param, message }
}

/// The limits a new key asks for, before they are bounded by its creator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requested {
    /// Scopes after defaults were applied.
    pub scopes: Vec<String>,
    /// Allowed models (empty: all).
    pub models: Vec<String>,
    /// Requests per minute (None: the configured default).
    pub rpm: Option<u32>,
    /// Expiry, Unix seconds (None: never).
    pub valid_until: Option<i64>,
    /// Globs over federated MCP tools (empty: all).
    pub mcp_tools: Vec<String>,
}

/// Bounds `req` by `creator`: refuses what exceeds it and fills in what was
/// left open (rate and lifetime inherit the creator's own bound).
///
/// `default_rpm` is the configured per-key rate (0: unlimited); `chain`
/// resolves a model name to the models it may run on (an alias is a chain),
/// exactly as a chat request would, so a key can only name models its
/// creator could itself call.
pub fn bound(
    creator: &Principal,
    mut req: Requested,
    default_rpm: u32,
    chain: impl Fn(&str) -> Option<Vec<String>>,
) -> Result<Requested, GrantError> {
    let superadmin = creator.has(SCOPE_SUPERADMIN);
    if let Some(s) = req.scopes.iter().find(|s| !superadmin && !creator.has(s)) {
        return Err(refuse(
            "scopes",
            format!("cannot grant the '{s}' scope, which this credential does not hold"),
        ));
    }

    if !creator.models.is_empty() {
        if req.models.is_empty() {
            return Err(refuse(
                "models",
                "this credential is limited to some models, so the new key must name models from its list".into(),
            ));
        }
        for m in &req.models {
            let allowed = chain(m).is_some_and(|ids| {
                !ids.is_empty() && ids.iter().all(|id| creator.require_model(m, id).is_ok())
            });
            if !allowed {
                return Err(refuse(
                    "models",
                    format!("cannot grant the model '{m}', which this credential may not use"),
                ));
            }
        }
    }

    // 0 means unlimited, as for the configured default.
    let creator_rpm = creator.rpm.unwrap_or(default_rpm);
    if creator_rpm > 0 {
        match req.rpm {
            // A creator on the default leaves its key on the default too; one
            // with its own limit pins the key at or under it, so a later
            // change of the default cannot lift the key above its creator.
            None if creator.rpm.is_some() => {
                req.rpm = Some(match default_rpm {
                    0 => creator_rpm,
                    d => d.min(creator_rpm),
                })
            }
            Some(r) if r > creator_rpm => {
                return Err(refuse(
                    "rpm",
                    format!("rpm {r} is above this credential's own limit of {creator_rpm}"),
                ));
            }
            _ => {}
        }
    }

    // A creator limited to some federated tools hands out at most those: a
    // key asking none inherits the creator's globs; each glob asked must be
    // one of the creator's, or a plain tool name one of them matches.
    if !creator.mcp_tools.is_empty() {
        if req.mcp_tools.is_empty() {
            req.mcp_tools = creator.mcp_tools.clone();
        } else if let Some(g) = req
            .mcp_tools
            .iter()
            .find(|g| !crate::mcp::names::glob_within(&creator.mcp_tools, g))
        {
            return Err(refuse(
                "mcp_tools",
                format!("cannot grant the MCP tools '{g}', beyond this credential's own mcp_tools"),
            ));
        }
    }

    if let Some(limit) = creator.expires_at {
        match req.valid_until {
            None => req.valid_until = Some(limit),
            Some(v) if v > limit => {
                return Err(refuse(
                    "expires_in_days",
                    format!(
                        "the key would outlive this credential, which expires at {limit} (Unix seconds)"
                    ),
                ));
            }
            _ => {}
        }
    }
    Ok(req)
}

/// Whether `actor` may revoke or change a key holding `target_scopes`: a key
/// stronger than the actor (a superadmin one) is out of a tenant admin's reach.
pub fn may_manage(actor: &Principal, target_scopes: &[String]) -> bool {
    actor.has(SCOPE_SUPERADMIN) || !target_scopes.iter().any(|s| s == SCOPE_SUPERADMIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin(models: &[&str], rpm: Option<u32>, expires_at: Option<i64>) -> Principal {
        Principal {
            tenant: "t".into(),
            key_id: "k".into(),
            scopes: vec!["admin".into(), "chat".into()],
            models: models.iter().map(|m| m.to_string()).collect(),
            rpm,
            expires_at,
            mcp_servers: Vec::new(),
            mcp_tools: Vec::new(),
        }
    }

    fn ask(models: &[&str], rpm: Option<u32>, valid_until: Option<i64>) -> Requested {
        Requested {
            scopes: vec!["chat".into()],
            models: models.iter().map(|m| m.to_string()).collect(),
            rpm,
            valid_until,
            mcp_tools: Vec::new(),
        }
    }

    // Aliases resolve as in chat: "fast" is a chain of two models.
    fn chain(m: &str) -> Option<Vec<String>> {
        match m {
            "fast" => Some(vec!["openai/a".into(), "openai/b".into()]),
            "nowhere" => None,
            other => Some(vec![other.to_owned()]),
        }
    }

    // Issue 16: a key's mcp_tools stay within its creator's; none asked: inherited.
    #[test]
    fn mcp_tools_are_bounded() {
        let mut creator = admin(&[], None, None);
        let mut r = ask(&[], None, None);
        r.mcp_tools = vec!["crm__*".into()];
        let open = bound(&creator, r.clone(), 0, chain).unwrap();
        assert_eq!(open.mcp_tools, ["crm__*"]);
        creator.mcp_tools = vec!["crm__get_*".into()];
        let e = bound(&creator, r, 0, chain).unwrap_err();
        assert_eq!(e.param, "mcp_tools");
        let inherited = bound(&creator, ask(&[], None, None), 0, chain).unwrap();
        assert_eq!(inherited.mcp_tools, ["crm__get_*"]);
        let mut narrow = ask(&[], None, None);
        narrow.mcp_tools = vec!["crm__get_customer".into()];
        assert!(bound(&creator, narrow, 0, chain).is_ok());
    }

    // Issue 12, point 2: scopes stay a subset of the creator's.
    #[test]
    fn scopes_are_bounded() {
        let mut r = ask(&[], None, None);
        r.scopes.push("usage:read".into());
        let e = bound(&admin(&[], None, None), r, 0, chain).unwrap_err();
        assert_eq!(e.param, "scopes");
    }

    // Issue 12, point 2: models are a subset of the creator's, and required
    // when the creator is restricted.
    #[test]
    fn models_are_bounded() {
        let restricted = admin(&["fast", "openai/c"], None, None);
        assert_eq!(
            bound(&restricted, ask(&[], None, None), 0, chain)
                .unwrap_err()
                .param,
            "models"
        );
        assert!(
            bound(
                &restricted,
                ask(&["fast", "openai/c"], None, None),
                0,
                chain
            )
            .is_ok()
        );
        // The alias's members are usable through the alias only.
        assert!(bound(&restricted, ask(&["openai/a"], None, None), 0, chain).is_err());
        assert!(bound(&restricted, ask(&["openai/d"], None, None), 0, chain).is_err());
        assert!(bound(&restricted, ask(&["nowhere"], None, None), 0, chain).is_err());
        // An unrestricted creator may grant any model list, or none.
        assert!(
            bound(
                &admin(&[], None, None),
                ask(&["openai/d"], None, None),
                0,
                chain
            )
            .is_ok()
        );
    }

    // Issue 12, point 2: the rate is no higher than the creator's.
    #[test]
    fn rate_is_bounded() {
        let slow = admin(&[], Some(10), None);
        assert_eq!(
            bound(&slow, ask(&[], Some(11), None), 0, chain)
                .unwrap_err()
                .param,
            "rpm"
        );
        assert_eq!(
            bound(&slow, ask(&[], Some(5), None), 0, chain).unwrap().rpm,
            Some(5)
        );
        // Omitted: the creator's limit, unless the default is already lower.
        assert_eq!(
            bound(&slow, ask(&[], None, None), 0, chain).unwrap().rpm,
            Some(10)
        );
        assert_eq!(
            bound(&slow, ask(&[], None, None), 100, chain).unwrap().rpm,
            Some(10)
        );
        assert_eq!(
            bound(&slow, ask(&[], None, None), 5, chain).unwrap().rpm,
            Some(5)
        );
        // A creator on the default leaves the key on it.
        assert_eq!(
            bound(&admin(&[], None, None), ask(&[], None, None), 60, chain)
                .unwrap()
                .rpm,
            None
        );
        // A creator on the default limit bounds the same way.
        assert!(bound(&admin(&[], None, None), ask(&[], Some(61), None), 60, chain).is_err());
        assert!(
            bound(
                &admin(&[], None, None),
                ask(&[], Some(1000), None),
                0,
                chain
            )
            .is_ok()
        );
    }

    // Issue 12, point 2: the lifetime ends no later than the creator's.
    #[test]
    fn lifetime_is_bounded() {
        let mortal = admin(&[], None, Some(1_000));
        assert_eq!(
            bound(&mortal, ask(&[], None, Some(1_001)), 0, chain)
                .unwrap_err()
                .param,
            "expires_in_days"
        );
        assert_eq!(
            bound(&mortal, ask(&[], None, None), 0, chain)
                .unwrap()
                .valid_until,
            Some(1_000)
        );
        assert_eq!(
            bound(&mortal, ask(&[], None, Some(999)), 0, chain)
                .unwrap()
                .valid_until,
            Some(999)
        );
    }

    // Issue 12, point 2: a tenant admin cannot touch a superadmin key.
    #[test]
    fn superadmin_keys_are_out_of_reach() {
        let tenant_admin = admin(&[], None, None);
        assert!(!may_manage(&tenant_admin, &["superadmin".into()]));
        assert!(may_manage(&tenant_admin, &["chat".into()]));
        let mut root = admin(&[], None, None);
        root.scopes.push("superadmin".into());
        assert!(may_manage(&root, &["superadmin".into()]));
    }
}
