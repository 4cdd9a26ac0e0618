"""Stage 3: compose creatures from (part, code) requests with a fitted run."""

#: Sampler names accepted by ``--scheduler`` -> diffusers scheduler classes.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
}
