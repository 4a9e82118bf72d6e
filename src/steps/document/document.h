// The built-in `document` step: turns a job's results (download, analyze, summarize and the
// engine's processing record) into a Markdown report and a self-contained HTML report (keyframes
// embedded as data: URIs, inline CSS, no external requests), written atomically to
// `outdir/JOB/report.md` and `report.html` (one copy; the work folder only when there is no
// outdir), all listed in StepOutcome::deliverables.
// docs/steps/document.md documents what the report holds and every `with:` key.
//
// Thread-safety: the step object is immutable after construction; Run may be called from several
// threads at once (each job writes its own folder).
#pragma once

#include "baton/step.h"

namespace baton {

// Registers the step kind "document".
void RegisterDocumentStep(StepRegistry& registry);

}  // namespace baton
