#!/usr/bin/env python3
"""Writes the Lambda Managed Instances variant of infra/template.yaml.

SAM cannot make a function's CapacityProviderConfig conditional (its translator
validates the property before CloudFormation evaluates conditions), so the
ManagedInstances parameter alone only creates the capacity provider. This
script derives the template whose functions run on it: ManagedInstances fixed
to "true" and the capacity provider's resources unconditional, the network
parameters required (no empty defaults), and the chat function (every
function with --all) joined to the capacity provider with
ManagedInstancesConcurrency invocations per execution environment and at
least 2048 MB (an environment has at least 2 GiB per vCPU).

Chat is the function that waits: a turn holds its invocation for seconds while
the provider answers. The others answer in milliseconds and cost little per
invocation, while every function on the capacity provider keeps execution
environments running (infra/README.md, the cost model).

    python3 scripts/managed-instances-template.py [--all] > infra/template.managed-instances.yaml
    sam build -t infra/template.managed-instances.yaml && sam deploy --guided

The output sits next to the source template so that CodeUri paths still resolve.
"""

import pathlib
import re
import sys

SOURCE = pathlib.Path(__file__).resolve().parents[1] / "infra" / "template.yaml"

# Lambda Managed Instances environments have at least 2 GiB (per vCPU).
MIN_MEMORY_MB = 2048

# Function resource -> its memory parameter.
FUNCTIONS = {
    "ChatFunction": "ChatMemorySize",
    "ModelsFunction": "ModelsMemorySize",
    "KeysFunction": "KeysMemorySize",
    "UsageFunction": "UsageMemorySize",
    "ConversationsFunction": "ConversationsMemorySize",
    "McpFunction": "McpMemorySize",
    "SweeperFunction": "SweeperMemorySize",
}
CAPACITY = """\
      # Lambda Managed Instances (scripts/managed-instances-template.py): many
      # invocations per execution environment, on the capacity provider.
      CapacityProviderConfig:
        Arn: !GetAtt ManagedInstancesCapacityProvider.Arn
        PerExecutionEnvironmentMaxConcurrency: !Ref ManagedInstancesConcurrency
"""


def replace_once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        sys.exit(f"managed-instances-template: expected exactly one {old!r} in {SOURCE}")
    return text.replace(old, new)


def variant(text: str, functions=("ChatFunction",)) -> str:
    """The managed-instances template from the source template's text, with
    `functions` (logical ids) on the capacity provider."""
    text = replace_once(
        text,
        '  ManagedInstances:\n    Type: String\n    Default: "false"\n    AllowedValues: ["true", "false"]\n',
        '  ManagedInstances:\n    Type: String\n    Default: "true"\n    AllowedValues: ["true"]\n',
    )
    # The condition is always true here: drop it (and its comment); the
    # resources it guarded simply exist.
    lines = text.split("\n")
    if "  UseManagedInstances: !And" not in lines:
        sys.exit(f"managed-instances-template: no UseManagedInstances condition in {SOURCE}")
    i = lines.index("  UseManagedInstances: !And")
    j = i + 1
    while lines[j].startswith("    - "):
        j += 1
    k = i
    while lines[k - 1].startswith("  # "):
        k -= 1
    del lines[k:j]
    text = "\n".join(lines)
    if text.count("    Condition: UseManagedInstances\n") != 3:
        sys.exit(f"managed-instances-template: expected three resources under UseManagedInstances in {SOURCE}")
    text = text.replace("    Condition: UseManagedInstances\n", "")
    for name in ("ManagedInstancesSubnetIds", "ManagedInstancesSecurityGroupIds"):
        text = replace_once(
            text,
            f'  {name}:\n    Type: String\n    Default: ""\n',
            f"  {name}:\n    Type: String\n",
        )

    for function in functions:
        param = FUNCTIONS[function]
        text, n = re.subn(
            rf"(  {param}:\n    Type: Number\n    )Default: (\d+)\n    MinValue: \d+\n",
            lambda m: f"{m.group(1)}Default: {max(int(m.group(2)), MIN_MEMORY_MB)}\n    MinValue: {MIN_MEMORY_MB}\n",
            text,
        )
        if n != 1:
            sys.exit(f"managed-instances-template: no parameter {param} in {SOURCE}")
        head = f"  {function}:\n    Type: AWS::Serverless::Function\n"
        at = text.find(head)
        props = text.find("    Properties:\n", at)
        if at < 0 or props < 0:
            sys.exit(f"managed-instances-template: no function {function} in {SOURCE}")
        props += len("    Properties:\n")
        text = text[:props] + CAPACITY + text[props:]
    return text


def main() -> None:
    functions = tuple(FUNCTIONS) if "--all" in sys.argv[1:] else ("ChatFunction",)
    sys.stdout.write(variant(SOURCE.read_text(), functions))


if __name__ == "__main__":
    main()
