"""A saved scorer as one step of the pipelines pretraining data already flows through, one module per
host, each imported only when asked for (importing `dataselect` never imports a host):

    dataselect.integrations.datatrove   ScorerFilter: a datatrove BaseFilter        (pip install dataselect[datatrove])
    dataselect.integrations.ray_data    ScoreBatches / score_dataset: Ray Data map_batches   (dataselect[ray])
    dataselect.integrations.hf_datasets add_scores, ScoreFilteredStream: `datasets` and torch
    dataselect.integrations.curator     SavedScorerStage: a NeMo Curator ProcessingStage  (dataselect[curator])

Each loads the scorer lazily in the worker, scores in batches, writes the score into the record and,
given `keep` or `threshold`, drops the records below it (see docs/pipelines.md).
"""
