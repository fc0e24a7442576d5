"""infra/template.yaml through the AWS SAM translator (offline, as CloudFormation's
transform would run it): the chat route really streams, the others do not."""

import copy
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


@pytest.fixture(scope="module")
def translated():
    source = yaml_parse(TEMPLATE.read_text())
    doc = copy.deepcopy(source)
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
    Resource "*", nor carry a managed policy beyond basic logging."""
    allowed = (
        "policy/service-role/AWSLambdaBasicExecutionRole",
        "policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
    )
    roles = {k: r for k, r in translated["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert "SweeperRole" in roles
    for name, role in roles.items():
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            text = arn.get("Fn::Sub", arn) if isinstance(arn, dict) else arn
            assert text.endswith(allowed), (name, arn)
        for policy in role["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                if any(a.startswith(("dynamodb:", "secretsmanager:")) for a in actions):
                    resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                    assert "*" not in resources, (name, st)
