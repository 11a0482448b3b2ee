"""census/raw: pull the 2020 state populations from the Census API into the holding store."""

from dorc import CreatePipeline, CronTrigger, Function, NextFunction, PipelineDefinition, load_config

config = load_config(__file__)

pipeline_definition = PipelineDefinition(
    file_path=__file__,
    description="Pulls raw census data from API",
    functions=[
        Function(
            name="function1",
            description="Fetch state populations (2020 Decennial, P1_001N) and store them raw",
            timeout=60,
            memory=256,
            environment={
                "CENSUS_API_URL": config.get("census_api_url", "https://api.census.gov/data/2020/dec/pl"),
            },
            next_function=NextFunction(name="processed", type="Pipeline"),
        ),
    ],
    trigger=CronTrigger(name="daily", cron="0 6 * * ? *"),
)

pipeline = CreatePipeline(config, pipeline_definition)
pipeline.apply()
