"""Model management as a node: pull a model so later nodes (or requests) find it locally."""

from engine import TEXT, Cancelled, Input, Node, Output


class Pull(Node):
    """Pull a model (hf:ORG/NAME[@REV] or ollama:NAME[:TAG]) with progress; resumes an interrupted pull."""

    type = "model.pull"
    volatile = True  # what is on disk changes outside the graph: always check
    inputs = {
        "ref": Input(TEXT, "model reference, e.g. hf:stabilityai/sd-turbo or ollama:llama3.2",
                     minLength=1, maxLength=512, widget="model"),
        "variant": Input(TEXT, "weights variant to fetch for Hugging Face models (empty: the default)",
                         default="", enum=["", "fp16"]),
    }
    outputs = {
        "ref": Output(TEXT, "the reference, normalised"),
        "location": Output(TEXT, "local folder (Hugging Face) or NAME:TAG (Ollama)"),
    }

    def run(self, ctx, ref, variant):
        store = ctx.require_models().store
        parsed = store.parse(ref)

        def progress(report):
            ctx.check_cancelled()  # raising here stops the download; the next pull resumes it
            ctx.progress(report.completed or 0, report.total, report.status)

        # on_cancel: a cancelled or timed-out job closes the pull's stream, even if the server went silent
        try:
            folder = store.pull(parsed, variant=variant or None, progress=progress, on_cancel=ctx.on_cancel)
        except Cancelled:
            ctx.check_cancelled()  # the job's own reason (its time limit, a request), not the stream's
            raise
        location = str(folder) if folder is not None else parsed.ollama_name
        return {"ref": str(parsed), "location": location}
