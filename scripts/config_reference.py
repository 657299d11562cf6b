"""Print the config reference (every field, its default and description) as Markdown, from tandem.config."""

from pydantic import BaseModel

from tandem import config as C

SECTIONS = [("(top level)", C.Config), ("data", C.DataConfig), ("data.domains.NAME", C.DomainConfig),
            ("tokenizer", C.TokenizerConfig), ("model / mixer.proxy", C.ModelConfig), ("train", C.TrainConfig),
            ("eval", C.EvalConfig), ("mixer", C.MixerConfig), ("mixer.odm", C.ODMConfig),
            ("mixer.aioli", C.AioliConfig), ("mixer.skillit", C.SkillItConfig), ("mixer.ado", C.ADOConfig),
            ("stages", C.StagesConfig)]


def default_of(f) -> str:
    if f.is_required():
        return "required"
    if f.default_factory is not None:
        return "(section)"
    return f"`{f.default!r}`".replace("None", "null")


for title, model in SECTIONS:
    print(f"\n**{title}**\n\n| field | default | meaning |\n|---|---|---|")
    for name, f in model.model_fields.items():
        if name in C.LOADER_FIELDS:  # set by the loader
            continue
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel) and title == "(top level)":
            continue
        print(f"| `{name}` | {default_of(f)} | {(f.description or '').replace('|', '/')} |")
