"""census/processed: clean the raw records, then derive model-ready features per state."""

# Written with the seed project's import paths on purpose: dorc loads such files unchanged.
from infrastructure.core.Creator import CreatePipeline, load_config
from infrastructure.core.models.definition import Function, PipelineDefinition

config = load_config(__file__)

pipeline_definition = PipelineDefinition(
    file_path=__file__,
    description="Cleans raw census records and derives per-state features",
    functions=[
        Function(name="function1", description="Validate and clean the raw records", timeout=60,
                 next_function="function2"),
        Function(name="function2", description="Population share, rank and region features", timeout=60),
    ],
)

pipeline = CreatePipeline(config, pipeline_definition)
pipeline.apply()
