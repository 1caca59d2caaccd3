"""`GET /v1/models` and `GET /v1/models/{model}`: the deployment's models (`consumer.core.video_models`) as OpenAI's
model objects (`client.models` of its SDKs), with what each can render."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from consumer.core.video_models import ModelRegistry, VideoModel, seconds_text
from consumer.errors import ApiFailure
from schemas.serving import ModelInfo, ModelList

__all__ = ["ModelRoutes"]


@dataclass(frozen=True)
class ModelRoutes:
    models: ModelRegistry

    async def list_models(self, _: web.Request) -> web.Response:
        body = ModelList(data=[self._info(model) for model in self.models])
        return web.json_response(text=body.model_dump_json())

    async def model(self, request: web.Request) -> web.Response:
        model = self.models.get(request.match_info["model"])
        if model is None:
            raise ApiFailure(404, "model_not_found", "this API serves no such model")
        return web.json_response(text=self._info(model).model_dump_json())

    def _info(self, model: VideoModel) -> ModelInfo:
        family = model.family
        return ModelInfo(
            id=model.id,
            created=family.created,
            owned_by=family.owned_by,
            family=family.name,
            default=model is self.models.default,
            sizes={"min": family.min_side, "max": family.max_side, "multiple": family.size_multiple},
            fps=family.fps,
            frame_rule=family.frame_rule,
            min_frames=family.min_frames,
            max_frames=family.max_frames,
            max_seconds=seconds_text(family.rendered_frames(family.max_frames), family.fps),
            start_image=family.start_image,
            text_to_video=family.text_to_video,
            negative_prompt=family.negative_prompt,
            guidance_scale=list(family.guidance) if family.guidance is not None else None,
        )
