"""The run report: a document model rendered as Markdown and HTML (`render`), figures (`plots`), and
the sections built from a run folder (`results`: the headline; `sections`: one per stage)."""
