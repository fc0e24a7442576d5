//! The MCP conformance suite's fixture surface (its `test_*` tools, `test://`
//! resources, prompts and completions), served by the local server's `/mcp`
//! only when `mcp_server.conformance_fixtures` is on. It exists so that the
//! official suite can exercise the protocol machinery behind ctxgate's real
//! endpoint (auth, envelope checks, rmcp's stateless service); it is compiled
//! only into the local server (`cli` feature), never into a Lambda function.
//!
//! Each fixture answers exactly what the suite's scenario names; nothing here
//! touches a tenant's data.

// The suite still exercises what 2026-07-28 deprecated (sampling, roots and
// logging as input requests and notifications).
#![allow(deprecated)]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use rmcp::RoleServer;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities,
    CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock, CreateMessageRequest,
    CreateMessageRequestParams, ElicitRequest, ElicitRequestParams, ErrorData,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, InputRequest, InputRequests,
    InputRequiredResult, InputResponses, JsonObject, ListRootsRequest,
    LoggingMessageNotificationParam, ProgressNotificationParam, Prompt, PromptArgument,
    PromptMessage, Reference, RequestStateCodec, Resource, ResourceContents, ResourceTemplate,
    Role, SamplingMessage, Tool,
};
use rmcp::service::RequestContext;
use serde_json::{Value, json};

/// A 1x1 red PNG.
const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// Eight samples of 8 kHz mono silence, as WAV.
const WAV: &str = "UklGRiwAAABXQVZFZm10IBAAAAABAAEAQB8AAEAfAAABAAgAZGF0YQgAAACAgICAgICAgA==";

/// Seals the `requestState` of multi-round results: the client echoes it
/// back and may tamper with it, so it is HMAC-protected. A key per process
/// is enough (the fixtures run on one local server).
static STATE: LazyLock<RequestStateCodec> = LazyLock::new(|| {
    let key: [u8; 32] = crate::ids::random_bytes();
    RequestStateCodec::try_new(key).expect("a 32-byte key is long enough")
});

fn object(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(o) => Arc::new(o),
        _ => Arc::new(JsonObject::new()),
    }
}

fn no_arguments() -> Arc<JsonObject> {
    object(json!({"type": "object", "properties": {}}))
}

/// The tools whose calls ask the client for input (SEP-2322).
const INPUT_TOOLS: &[&str] = &[
    "test_input_required_result_elicitation",
    "test_input_required_result_sampling",
    "test_input_required_result_list_roots",
    "test_input_required_result_request_state",
    "test_input_required_result_multiple_inputs",
    "test_input_required_result_multi_round",
    "test_input_required_result_tampered_state",
    "test_input_required_result_capabilities",
];

/// The fixture tools, after ctxgate's own in `tools/list`.
pub fn tools() -> Vec<Tool> {
    let plain = [
        ("test_simple_text", "Returns a simple text result."),
        ("test_image_content", "Returns an image."),
        ("test_audio_content", "Returns audio."),
        ("test_embedded_resource", "Returns an embedded resource."),
        (
            "test_multiple_content_types",
            "Returns text, an image and a resource.",
        ),
        ("test_error_handling", "Always fails, as an isError result."),
        (
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100.",
        ),
        (
            "test_missing_capability",
            "Needs the client's sampling capability.",
        ),
        ("test_streaming_elicitation", "Asks the client for a value."),
        (
            "test_logging_tool",
            "Logs one message when the request asks for a log level.",
        ),
    ];
    let mut tools: Vec<Tool> = plain
        .into_iter()
        .chain(
            INPUT_TOOLS
                .iter()
                .map(|n| (*n, "Asks the client for input before it completes.")),
        )
        .map(|(name, description)| Tool::new(name, description, no_arguments()))
        .collect();
    tools.push(Tool::new(
        "json_schema_2020_12_tool",
        "Tool with JSON Schema 2020-12 features",
        object(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
            "properties": {
                "name": {"type": "string"},
                "address": {"$ref": "#/$defs/address"},
                "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                "phone": {"type": "string"},
                "email": {"type": "string"},
            },
            "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
            "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
            "then": {"required": ["phone"]},
            "else": {"required": ["email"]},
            "additionalProperties": false,
        })),
    ));
    tools.push(custom_header_tool());
    tools
}

/// A tool with a parameter mirrored into an `Mcp-Param-Value` header
/// (SEP-2243), which rmcp checks against the body.
fn custom_header_tool() -> Tool {
    Tool::new(
        "test_custom_header",
        "Echoes a value that also travels in the Mcp-Param-Value header.",
        object(json!({
            "type": "object",
            "properties": {"value": {"type": "string", "x-mcp-header": "Value"}},
            "required": ["value"],
        })),
    )
}

/// The fixture tool named `name`, for rmcp's header checks.
pub fn tool(name: &str) -> Option<Tool> {
    tools().into_iter().find(|t| t.name == name)
}

fn text(t: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(t)]).into()
}

/// Runs fixture tool `request.name`; `None` when it is not one.
pub async fn call(
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Option<Result<CallToolResponse, ErrorData>> {
    let name = request.name.as_ref();
    if INPUT_TOOLS.contains(&name) {
        return Some(input_tool(name, request, ctx));
    }
    let r = match name {
        "test_simple_text" => text("This is a simple text response for testing."),
        "test_image_content" => {
            CallToolResult::success(vec![ContentBlock::image(PNG, "image/png")]).into()
        }
        "test_audio_content" => {
            CallToolResult::success(vec![ContentBlock::audio(WAV, "audio/wav")]).into()
        }
        "test_embedded_resource" => CallToolResult::success(vec![ContentBlock::resource(
            ResourceContents::text(
                "This is an embedded resource content.",
                "test://embedded-resource",
            )
            .with_mime_type("text/plain"),
        )])
        .into(),
        "test_multiple_content_types" => CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(PNG, "image/png"),
            ContentBlock::resource(
                ResourceContents::text(
                    r#"{"test":"data","value":123}"#,
                    "test://mixed-content-resource",
                )
                .with_mime_type("application/json"),
            ),
        ])
        .into(),
        "test_error_handling" => CallToolResult::error(vec![ContentBlock::text(
            "This tool intentionally returns an error for testing",
        )])
        .into(),
        "test_tool_with_progress" => {
            let token = ctx.meta.get_progress_token();
            for step in [0.0, 50.0, 100.0] {
                if let Some(token) = &token {
                    let note =
                        ProgressNotificationParam::new(token.clone(), step).with_total(100.0);
                    let _ = ctx.peer.notify_progress(note).await;
                }
                // The scenario's pacing: progress arrives over time.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            text("Progress test completed")
        }
        "test_missing_capability" => {
            let declared = ctx.meta.client_capabilities().unwrap_or_default();
            if declared.sampling.is_none() {
                return Some(Err(ErrorData::missing_required_client_capability(
                    ClientCapabilities::builder().enable_sampling().build(),
                )));
            }
            text("The sampling capability is declared.")
        }
        "test_streaming_elicitation" => InputRequiredResult::from_input_requests(requests([(
            "streaming_elicitation",
            elicit(
                "Provide a value",
                json!({"value": {"type": "string"}}),
                &["value"],
            ),
        )]))
        .into(),
        "test_logging_tool" => {
            // Only a request that set `_meta.../logLevel` gets log messages.
            if let Some(level) = ctx.meta.log_level() {
                let note = LoggingMessageNotificationParam::new(level, json!("logLevel was set"))
                    .with_logger("ctxgate-fixtures");
                let _ = ctx.peer.notify_logging_message(note).await;
            }
            text("Logging tool completed")
        }
        "json_schema_2020_12_tool" => text("ok"),
        "test_custom_header" => {
            let value = request
                .arguments
                .as_ref()
                .and_then(|a| a.get("value"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            text(format!("value: {value}"))
        }
        _ => return None,
    };
    Some(Ok(r))
}

fn requests<const N: usize>(items: [(&str, InputRequest); N]) -> InputRequests {
    items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn elicit(message: &str, properties: Value, required: &[&str]) -> InputRequest {
    let schema = json!({"type": "object", "properties": properties, "required": required});
    InputRequest::Elicitation(ElicitRequest::new(
        ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message.to_owned(),
            requested_schema: serde_json::from_value(schema)
                .expect("the fixture's schema is a valid elicitation schema"),
        },
    ))
}

fn sample(prompt: &str, max_tokens: u32) -> InputRequest {
    InputRequest::CreateMessage(CreateMessageRequest::new(CreateMessageRequestParams::new(
        vec![SamplingMessage::user_text(prompt)],
        max_tokens,
    )))
}

fn roots() -> InputRequest {
    InputRequest::ListRoots(ListRootsRequest::default())
}

/// The client's answer to input request `key`, when it is an object (an
/// `ElicitResult`, `CreateMessageResult` or `ListRootsResult`); anything
/// else counts as missing, so the input is asked for again.
fn answer<'a>(responses: Option<&'a InputResponses>, key: &str) -> Option<&'a JsonObject> {
    responses?.get(key)?.as_object()
}

fn sealed(state: Value) -> String {
    STATE.seal_json(&state).unwrap_or_default()
}

/// The echoed `requestState`, opened; tampering is invalid params.
fn opened(state: Option<&str>) -> Result<Option<Value>, ErrorData> {
    state
        .map(|s| {
            STATE.open_json::<Value>(s).map_err(|_| {
                ErrorData::invalid_params(
                    "requestState failed its integrity check",
                    Some(json!({"field": "params.requestState"})),
                )
            })
        })
        .transpose()
}

fn input_tool(
    name: &str,
    request: &CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let responses = request.input_responses.as_ref();
    let state = opened(request.request_state.as_deref())?;
    let name_request = || {
        elicit(
            "What is your name?",
            json!({"name": {"type": "string"}}),
            &["name"],
        )
    };
    let ask = |items: InputRequests, state: Option<Value>| -> CallToolResponse {
        InputRequiredResult::new(Some(items), state.map(sealed)).into()
    };
    Ok(match name {
        "test_input_required_result_elicitation" => match answer(responses, "user_name") {
            Some(a) => {
                let who = a
                    .get("content")
                    .and_then(|c| c.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or("friend");
                text(format!("Hello, {who}!"))
            }
            None => ask(requests([("user_name", name_request())]), None),
        },
        "test_input_required_result_sampling" => match answer(responses, "capital_question") {
            Some(a) => {
                let said = a
                    .get("content")
                    .and_then(|c| c.get("text"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                text(format!("The client's model said: {said}"))
            }
            None => ask(
                requests([(
                    "capital_question",
                    sample("What is the capital of France?", 100),
                )]),
                None,
            ),
        },
        "test_input_required_result_list_roots" => match answer(responses, "client_roots") {
            Some(a) => {
                let uris: Vec<&str> = a
                    .get("roots")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.get("uri").and_then(Value::as_str))
                    .collect();
                text(format!("The client's roots: {}", uris.join(", ")))
            }
            None => ask(requests([("client_roots", roots())]), None),
        },
        "test_input_required_result_request_state"
        | "test_input_required_result_tampered_state" => {
            match (&state, answer(responses, "confirm")) {
                (Some(s), Some(_)) if s["stage"] == "confirm" => text("Confirmed: state-ok"),
                _ => ask(
                    requests([(
                        "confirm",
                        elicit(
                            "Please confirm",
                            json!({"ok": {"type": "boolean"}}),
                            &["ok"],
                        ),
                    )]),
                    Some(json!({"stage": "confirm"})),
                ),
            }
        }
        "test_input_required_result_multiple_inputs" => {
            let keys = ["user_name", "greeting", "client_roots"];
            if state.is_some() && keys.iter().all(|k| answer(responses, k).is_some()) {
                text("All three inputs received.")
            } else {
                ask(
                    requests([
                        ("user_name", name_request()),
                        ("greeting", sample("Generate a greeting", 50)),
                        ("client_roots", roots()),
                    ]),
                    Some(json!({"stage": "all"})),
                )
            }
        }
        "test_input_required_result_multi_round" => {
            let stage = state.as_ref().and_then(|s| s["stage"].as_str());
            match (
                stage,
                answer(responses, "step1"),
                answer(responses, "step2"),
            ) {
                (Some("step2"), _, Some(_)) => text("Both steps answered."),
                (Some("step1"), Some(_), _) | (Some("step2"), _, None) => ask(
                    requests([(
                        "step2",
                        elicit(
                            "Step 2: What is your favorite color?",
                            json!({"color": {"type": "string"}}),
                            &["color"],
                        ),
                    )]),
                    Some(json!({"stage": "step2"})),
                ),
                _ => ask(
                    requests([(
                        "step1",
                        elicit(
                            "Step 1: What is your name?",
                            json!({"name": {"type": "string"}}),
                            &["name"],
                        ),
                    )]),
                    Some(json!({"stage": "step1"})),
                ),
            }
        }
        // Only what the client declared it can answer is asked for.
        _ => {
            if responses.is_some() {
                return Ok(text("The declared inputs were received."));
            }
            let declared = ctx.meta.client_capabilities().unwrap_or_default();
            let mut items = InputRequests::new();
            if declared.elicitation.is_some() {
                items.insert("user_name".into(), name_request());
            }
            if declared.sampling.is_some() {
                items.insert("greeting".into(), sample("Generate a greeting", 50));
            }
            if declared.roots.is_some() {
                items.insert("client_roots".into(), roots());
            }
            if items.is_empty() {
                text("The client declared nothing that can be asked.")
            } else {
                ask(items, None)
            }
        }
    })
}

/// The fixture resources, after the tenant's conversations.
pub fn resources() -> Vec<Resource> {
    let mut text = Resource::new("test://static-text", "static-text");
    text.mime_type = Some("text/plain".into());
    let mut binary = Resource::new("test://static-binary", "static-binary");
    binary.mime_type = Some("image/png".into());
    vec![text, binary]
}

/// The fixture resource template.
pub fn templates() -> Vec<ResourceTemplate> {
    let mut t = ResourceTemplate::new("test://template/{id}/data", "template-data");
    t.mime_type = Some("application/json".into());
    vec![t]
}

/// Reads fixture resource `uri`; `None` when it is not one.
pub fn read(uri: &str) -> Option<ResourceContents> {
    match uri {
        "test://static-text" => Some(
            ResourceContents::text("This is the content of the static text resource.", uri)
                .with_mime_type("text/plain"),
        ),
        "test://static-binary" => {
            Some(ResourceContents::blob(PNG, uri).with_mime_type("image/png"))
        }
        _ => {
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")
                .filter(|id| !id.is_empty() && !id.contains('/'))?;
            let body =
                json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
            Some(ResourceContents::text(body.to_string(), uri).with_mime_type("application/json"))
        }
    }
}

fn argument(name: &str, description: &str) -> PromptArgument {
    let mut a = PromptArgument::new(name);
    a.description = Some(description.to_owned());
    a.required = Some(true);
    a
}

/// The fixture prompts.
pub fn prompts() -> Vec<Prompt> {
    vec![
        Prompt::new(
            "test_simple_prompt",
            Some("A prompt without arguments."),
            None,
        ),
        Prompt::new(
            "test_prompt_with_arguments",
            Some("A prompt with two arguments."),
            Some(vec![
                argument("arg1", "First test argument"),
                argument("arg2", "Second test argument"),
            ]),
        ),
        Prompt::new(
            "test_prompt_with_embedded_resource",
            Some("A prompt that embeds a resource."),
            Some(vec![argument(
                "resourceUri",
                "URI of the resource to embed",
            )]),
        ),
        Prompt::new(
            "test_prompt_with_image",
            Some("A prompt with an image."),
            None,
        ),
        Prompt::new(
            "test_input_required_result_prompt",
            Some("A prompt that asks the client for context first."),
            None,
        ),
    ]
}

/// Gets fixture prompt `request.name`; `None` when it is not one.
pub fn prompt(request: &GetPromptRequestParams) -> Option<Result<GetPromptResponse, ErrorData>> {
    let arg = |name: &str| -> Result<String, ErrorData> {
        request
            .arguments
            .as_ref()
            .and_then(|a| a.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                ErrorData::invalid_params(
                    format!("argument '{name}' is required"),
                    Some(json!({"field": format!("params.arguments.{name}")})),
                )
            })
    };
    let user = |t: String| PromptMessage::new_text(Role::User, t);
    let messages = match request.name.as_str() {
        "test_simple_prompt" => Ok(vec![user("This is a simple prompt for testing.".into())]),
        "test_prompt_with_arguments" => arg("arg1").and_then(|a1| {
            let a2 = arg("arg2")?;
            Ok(vec![user(format!(
                "Prompt with arguments: arg1='{a1}', arg2='{a2}'"
            ))])
        }),
        "test_prompt_with_embedded_resource" => arg("resourceUri").map(|uri| {
            vec![
                PromptMessage::new(
                    Role::User,
                    ContentBlock::resource(
                        ResourceContents::text("Embedded resource content for testing.", uri)
                            .with_mime_type("text/plain"),
                    ),
                ),
                user("Please process the embedded resource above.".into()),
            ]
        }),
        "test_prompt_with_image" => Ok(vec![
            PromptMessage::new(Role::User, ContentBlock::image(PNG, "image/png")),
            user("Please analyze the image above.".into()),
        ]),
        "test_input_required_result_prompt" => {
            let context = answer(request.input_responses.as_ref(), "user_context").map(|a| {
                a.get("content")
                    .and_then(|c| c.get("context"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            });
            return Some(Ok(match context {
                Some(c) => GetPromptResult::new(vec![user(format!("Context: {c}"))]).into(),
                None => InputRequiredResult::from_input_requests(requests([(
                    "user_context",
                    elicit(
                        "What context should the prompt use?",
                        json!({"context": {"type": "string"}}),
                        &["context"],
                    ),
                )]))
                .into(),
            }));
        }
        _ => return None,
    };
    Some(messages.map(|m| GetPromptResult::new(m).into()))
}

/// Completes a fixture prompt's argument from a few words, by prefix.
pub fn complete(request: &CompleteRequestParams) -> CompleteResult {
    const WORDS: &[&str] = &["paris", "park", "party", "hello", "world"];
    let values: Vec<String> = match &request.r#ref {
        Reference::Prompt(p) if p.name == "test_prompt_with_arguments" => WORDS
            .iter()
            .filter(|w| w.starts_with(&request.argument.value.to_ascii_lowercase()))
            .map(|w| (*w).to_owned())
            .collect(),
        _ => Vec::new(),
    };
    let total = values.len() as u32;
    let mut info = CompletionInfo::default();
    info.values = values;
    info.total = Some(total);
    info.has_more = Some(false);
    CompleteResult::new(info)
}
