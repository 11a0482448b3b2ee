"""IAM enforced in LocalStack as in AWS: a handler's call outside its function's role fails with
AccessDenied, and the same call passes once the definition grants it (LocalStack's own
enforcement is a paid feature; dorc's executor plugin checks the calls signed with a function's
role session, with the same decision as the local AWS)."""

from __future__ import annotations

import pytest

from dorc.api import run_pipeline
from dorc.project import find_project
from helpers import make_project

pytestmark = pytest.mark.localstack

MAIN = '''
from dorc import CreatePipeline, Function, Permission, PipelineDefinition, load_config

config = load_config(__file__)
CreatePipeline(config, PipelineDefinition(
    file_path=__file__,
    description="reads a bucket of its own",
    functions=[Function(name="f1", permissions=[%s])],
)).apply()
'''
GRANT = 'Permission(actions=["s3:GetObject"], resources=["arn:aws:s3:::iamls-source/in/*"])'

READER = '''
import boto3

def handler(event, context):
    body = boto3.client("s3").get_object(Bucket="iamls-source", Key="in/data.csv")["Body"].read().decode()
    return {"statusCode": 200, "body": {"read": body}}
'''


def test_a_read_outside_the_grant_is_denied_and_passes_once_declared(dorc_localstack, tmp_path):
    root = make_project(tmp_path, {"iam/main": {"main": MAIN % "", "functions": {"f1": READER}}}, name="iamls")
    project = find_project(root)
    s3 = dorc_localstack.client("s3", region_name=project.settings.region)
    s3.create_bucket(Bucket="iamls-source", CreateBucketConfiguration={"LocationConstraint": project.settings.region})
    s3.put_object(Bucket="iamls-source", Key="in/data.csv", Body=b"a,b\n")

    denied = run_pipeline("iam", "main", target="localstack", project=project, endpoint=dorc_localstack.endpoint,
                          record=False)
    assert not denied.succeeded
    assert denied.error.type == "AccessDenied"  # botocore models S3's AccessDenied
    assert "(AccessDenied) when calling the GetObject operation" in denied.error.message
    assert ("assumed-role/iamls-iam-main-f1-localstack/iam-main-f1-localstack is not authorized to perform: "
            's3:GetObject on resource: "arn:aws:s3:::iamls-source/in/data.csv"') in denied.error.message

    (root / "src/iam/main/__main__.py").write_text(MAIN % GRANT)
    granted = run_pipeline("iam", "main", target="localstack", project=project, endpoint=dorc_localstack.endpoint,
                           record=False)
    assert granted.succeeded, granted.error
    assert granted.output["body"] == {"read": "a,b\n"}
