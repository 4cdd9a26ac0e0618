"""The base model and its text conditioning, shared by training and generation.

Below both stages: loading a base model's components (``base_model``), the part tokens
and prompt encoding with mapper vectors swapped in (``tokens``), the token mapper
(``mapper``), and the diffusers pipeline that turns part prompts into images
(``pipeline``). Nothing here imports ``training`` or ``generation``.
"""

#: Sampler names accepted by ``--scheduler`` -> diffusers scheduler classes.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler-a": "EulerAncestralDiscreteScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
}
