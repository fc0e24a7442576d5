"""infra/template.yaml through the AWS SAM translator (offline, as CloudFormation's
transform would run it): the chat route really streams, the others do not."""

import copy
import importlib.util
import pathlib

import pytest
import samtranslator
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

TEMPLATE = pathlib.Path(__file__).resolve().parents[2] / "infra" / "template.yaml"


class NoManagedPolicies:
    """The translator asks IAM for managed policy ARNs only for policy names; the
    template uses none, so no AWS call is needed."""

    def load(self):
        return {}


def translate(text):
    """The template text as CloudFormation's SAM transform turns it out."""
    doc = copy.deepcopy(yaml_parse(text))
    # `sam build`/`sam package` replace local CodeUri paths with S3 locations.
    for res in doc["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://artifacts/function.zip"
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    try:
        out = transform(doc, {"AWS::Region": "us-east-1"}, NoManagedPolicies())
    finally:
        mp.undo()
    return out


@pytest.fixture(scope="module")
def translated():
    return translate(TEMPLATE.read_text())


def managed_instances_text(functions=("ChatFunction",)):
    """scripts/managed-instances-template.py's output (`--all`: every function)."""
    script = TEMPLATE.parents[1] / "scripts" / "managed-instances-template.py"
    spec = importlib.util.spec_from_file_location("managed_instances_template", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    functions = tuple(module.FUNCTIONS) if functions is None else functions
    return module.variant(TEMPLATE.read_text(), functions)


def rest_api_paths(out):
    apis = [r for r in out["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    assert len(apis) == 1
    return apis[0]["Properties"]["Body"]["paths"]


def test_translator_knows_response_streaming():
    major, minor = (int(x) for x in samtranslator.__version__.split(".")[:2])
    assert (major, minor) >= (1, 115), samtranslator.__version__


# The chat function's routes: the three front doors of a turn, and their token counts.
STREAMED = {("/v1/chat/completions", "post"), ("/v1/messages", "post"), ("/v1/messages/count_tokens", "post"),
            ("/v1/responses", "post"), ("/v1/responses/input_tokens", "post")}


def test_the_chat_function_s_routes_stream(translated):
    paths = rest_api_paths(translated)
    for path, method in STREAMED:
        integration = paths[path][method]["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy"
        assert integration["responseTransferMode"] == "STREAM", path
        uri = integration["uri"]["Fn::Sub"]
        assert "/2021-11-15/functions/${ChatFunction.Arn}/response-streaming-invocations" in uri
    # The turns may run long; a token count needs no more than API Gateway's default.
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/responses"):
        assert paths[path]["post"]["x-amazon-apigateway-integration"]["timeoutInMillis"] > 29000


def test_other_routes_are_buffered_lambda_proxies(translated):
    seen = 0
    for path, methods in rest_api_paths(translated).items():
        for method, op in methods.items():
            integration = op["x-amazon-apigateway-integration"]
            if method == "options":
                assert integration["type"] == "mock"  # CORS preflight
                continue
            assert integration["type"] == "aws_proxy", (path, method)
            if (path, method) in STREAMED:
                continue
            seen += 1
            assert "responseTransferMode" not in integration, (path, method)
            assert integration["uri"]["Fn::Sub"].endswith("/invocations"), (path, method)
    assert seen >= 6


def test_functions_are_arm64_custom_runtime(translated):
    functions = [r for r in translated["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert functions
    for f in functions:
        props = f["Properties"]
        assert props["Runtime"] == "provided.al2023"
        assert props["Architectures"] == ["arm64"]
        assert props["Handler"] == "bootstrap"
        assert props["Environment"]["Variables"]["AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH"] == "true"


def test_stage_has_throttling_and_json_access_logs(translated):
    stage = next(r for r in translated["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage")
    props = stage["Properties"]
    settings = props["MethodSettings"][0]
    assert settings["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ThrottlingBurstLimit"}
    fmt = props["AccessLogSetting"]["Format"]
    assert fmt.startswith("{") and '"requestId":"$context.requestId"' in fmt


def test_no_role_reads_data_with_a_wildcard(translated):
    """After the transform, so policies SAM itself adds (an event source's managed
    role, for instance) count too: no role may use DynamoDB or Secrets Manager on
    Resource "*", nor carry a managed policy beyond basic logging (and, for the
    opt-in Lambda Managed Instances operator role, the EC2 operator policy Lambda
    needs to run the instances: no data access; and X-Ray's write-only policy, which
    SAM attaches for the Tracing parameter and a collector layer exporting to
    X-Ray needs: it writes trace segments and reads nothing)."""
    allowed = (
        "policy/service-role/AWSLambdaBasicExecutionRole",
        "policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
        "policy/AWSLambdaManagedEC2ResourceOperator",
        "policy/AWSXrayWriteOnlyAccess",
    )
    roles = {k: r for k, r in translated["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert "SweeperRole" in roles
    for name, role in roles.items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            text = arn.get("Fn::Sub", arn) if isinstance(arn, dict) else arn
            assert text.endswith(allowed), (name, arn)
        for policy in role["Properties"].get("Policies", []):
            for _, st in statements(policy):
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                if any(a.startswith(("dynamodb:", "secretsmanager:", "bedrock:")) for a in actions):
                    resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                    assert "*" not in resources, (name, st)


def statements(policy):
    """A role policy's statements as (condition or None, statement): a conditional one is
    `Fn::If [cond, statement, AWS::NoValue]`."""
    for st in policy["PolicyDocument"]["Statement"]:
        if "Fn::If" in st:
            cond, then, otherwise = st["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}, st
            yield cond, then
        else:
            yield None, st


# Issue 20: Bedrock. The roles of the functions that call providers may invoke the
# models and inference profiles BedrockModelArns lists, and nothing when it is empty.
BEDROCK_ACTIONS = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]


def test_bedrock_is_granted_on_the_parameter_s_arns_only(translated):
    granted = set()
    for name, role in translated["Resources"].items():
        if role["Type"] != "AWS::IAM::Role":
            continue
        for policy in role["Properties"].get("Policies", []):
            for cond, st in statements(policy):
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                if not any(a.startswith("bedrock:") for a in actions):
                    continue
                assert actions == BEDROCK_ACTIONS, (name, st)
                assert cond == "HasBedrockModels", (name, st)
                assert st["Resource"] == {"Fn::Split": [",", {"Ref": "BedrockModelArns"}]}, (name, st)
                granted.add(name)
    assert granted == {"ChatFunctionRole", "McpFunctionRole"}
    assert translated["Conditions"]["HasBedrockModels"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "BedrockModelArns"}, ""]}]}
    assert translated["Parameters"]["BedrockModelArns"]["Default"] == ""


@pytest.mark.parametrize("value,accepted", [
    ("", True),
    ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0", True),
    # A cross-region inference profile and its model in each region it routes to.
    ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0,"
     "arn:aws:bedrock:*::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0", True),
    ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-*", True),
    ("arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/amazon.nova-pro-v1:0", True),
    ("*", False),
    ("arn:aws:bedrock:us-east-1::foundation-model/*", False),
    ("arn:aws:bedrock:*:*:*", False),
    ("arn:aws:s3:::bucket", False),
    ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0, arn:aws:bedrock:us-east-1::foundation-model/x", False),
    ("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0,", False),
])
def test_bedrock_model_arns_refuse_a_wildcard_resource(translated, value, accepted):
    import re
    pattern = translated["Parameters"]["BedrockModelArns"]["AllowedPattern"]
    assert bool(re.fullmatch(pattern, value)) == accepted, value


# Lambda Managed Instances (issue 19): an opt-in. The default template only
# holds the capacity provider and its role under a condition that is false
# with the defaults, and no function names a capacity provider; the variant
# scripts/managed-instances-template.py writes runs chat (or, with --all,
# every function) on it.
MANAGED = {"ManagedInstancesOperatorRole": "AWS::IAM::Role",
           "ManagedInstancesCapacityProvider": "AWS::Lambda::CapacityProvider"}


def lambda_functions(out):
    return {k: r for k, r in out["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}


def test_managed_instances_are_off_by_default(translated):
    for name, kind in MANAGED.items():
        res = translated["Resources"][name]
        assert res["Type"] == kind
        assert res["Condition"] == "UseManagedInstances", name
    assert translated["Outputs"]["CapacityProviderArn"]["Condition"] == "UseManagedInstances"
    params = translated["Parameters"]
    assert params["ManagedInstances"]["Default"] == "false"
    # The condition holds only when the option is on (and its network is given).
    cond = translated["Conditions"]["UseManagedInstances"]["Fn::And"]
    assert {"Fn::Equals": [{"Ref": "ManagedInstances"}, "true"]} in cond
    functions = lambda_functions(translated)
    assert len(functions) == 7
    for name, res in functions.items():
        assert "CapacityProviderConfig" not in res["Properties"], name
    # Nothing else in the default template depends on the option.
    conditional = {k for k, r in translated["Resources"].items() if r.get("Condition") == "UseManagedInstances"}
    assert conditional == set(MANAGED)


@pytest.mark.parametrize("scope", ["chat", "all"])
def test_the_managed_instances_variant_runs_its_functions_on_the_capacity_provider(scope):
    out = translate(managed_instances_text(None if scope == "all" else ("ChatFunction",)))
    for name, kind in MANAGED.items():
        res = out["Resources"][name]
        assert res["Type"] == kind
        assert "Condition" not in res, name
    assert "UseManagedInstances" not in out.get("Conditions", {})
    provider = out["Resources"]["ManagedInstancesCapacityProvider"]["Properties"]
    assert provider["InstanceRequirements"]["Architectures"] == ["arm64"]
    assert provider["CapacityProviderScalingConfig"]["MaxVCpuCount"] == {"Ref": "ManagedInstancesMaxVCpus"}
    functions = lambda_functions(out)
    assert len(functions) == 7
    managed = {name for name, res in functions.items() if "CapacityProviderConfig" in res["Properties"]}
    assert managed == (set(functions) if scope == "all" else {"ChatFunction"})
    for name in managed:
        config = functions[name]["Properties"]["CapacityProviderConfig"]
        assert config["LambdaManagedInstancesCapacityProviderConfig"] == {
            "CapacityProviderArn": {"Fn::GetAtt": ["ManagedInstancesCapacityProvider", "Arn"]},
            "PerExecutionEnvironmentMaxConcurrency": {"Ref": "ManagedInstancesConcurrency"},
        }, name
        memory = functions[name]["Properties"]["MemorySize"]["Ref"]
        assert out["Parameters"][memory]["MinValue"] == 2048, name
    params = out["Parameters"]
    assert params["ManagedInstances"]["AllowedValues"] == ["true"]
    for p in ("ManagedInstancesSubnetIds", "ManagedInstancesSecurityGroupIds"):
        assert "Default" not in params[p], p
