//! A turn's MCP tools: listed (cached per tenant and server), named for the
//! model, and run.

use super::{Mcp, Outcome, ServerSpec, ToolRun};
use crate::model::{Tool, ToolCall, ToolResult, ToolResultPart};

/// The tools of the servers one turn uses.
pub struct Toolbox {
    tools: Vec<Tool>,
    unavailable: Vec<(String, String)>,
}

impl Mcp {
    /// Lists the servers' tools (from the cache when fresh). A server that
    /// cannot be listed is left out and reported by [`Toolbox::unavailable`].
    pub async fn toolbox(&self, _tenant: &str, servers: Vec<ServerSpec>) -> Toolbox {
        Toolbox {
            tools: Vec::new(),
            unavailable: servers
                .into_iter()
                .map(|s| (s.name, "not implemented".to_owned()))
                .collect(),
        }
    }
}

impl Toolbox {
    /// The tools as the model sees them (`{server}__{tool}`), in a stable order.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// Servers whose tools could not be listed, with why (no secrets in it).
    pub fn unavailable(&self) -> &[(String, String)] {
        &self.unavailable
    }

    /// Whether `name` (as the model saw it) is one of these tools.
    pub fn owns(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name() == Some(name))
    }

    /// The (server, tool) a name the model saw stands for.
    pub fn route(&self, name: &str) -> Option<(&str, &str)> {
        let _ = name;
        None
    }

    /// Runs one call; never fails: a failure is an error result the model sees.
    pub async fn call(&self, call: &ToolCall) -> ToolRun {
        ToolRun {
            server: String::new(),
            tool: call.name.clone(),
            outcome: Outcome::UnknownTool,
            duration: std::time::Duration::ZERO,
            result: ToolResult {
                call_id: call.id.clone(),
                content: vec![ToolResultPart::Text {
                    text: format!("unknown tool {}", call.name),
                    cache: None,
                }],
                is_error: true,
                cache: None,
            },
        }
    }
}
