from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Features(_message.Message):
    __slots__ = ("ints", "floats", "strings", "int_keys", "int_values", "float_keys", "float_values", "string_keys", "string_values")
    class IntsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class FloatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class StringsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INTS_FIELD_NUMBER: _ClassVar[int]
    FLOATS_FIELD_NUMBER: _ClassVar[int]
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    INT_KEYS_FIELD_NUMBER: _ClassVar[int]
    INT_VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT_KEYS_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_KEYS_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    ints: _containers.ScalarMap[str, int]
    floats: _containers.ScalarMap[str, float]
    strings: _containers.ScalarMap[str, str]
    int_keys: _containers.RepeatedScalarFieldContainer[int]
    int_values: _containers.RepeatedScalarFieldContainer[int]
    float_keys: _containers.RepeatedScalarFieldContainer[int]
    float_values: _containers.RepeatedScalarFieldContainer[float]
    string_keys: _containers.RepeatedScalarFieldContainer[int]
    string_values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ints: _Optional[_Mapping[str, int]] = ..., floats: _Optional[_Mapping[str, float]] = ..., strings: _Optional[_Mapping[str, str]] = ..., int_keys: _Optional[_Iterable[int]] = ..., int_values: _Optional[_Iterable[int]] = ..., float_keys: _Optional[_Iterable[int]] = ..., float_values: _Optional[_Iterable[float]] = ..., string_keys: _Optional[_Iterable[int]] = ..., string_values: _Optional[_Iterable[str]] = ...) -> None: ...

class AdCandidate(_message.Message):
    __slots__ = ("ad_id", "features")
    AD_ID_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ad_id: str
    features: Features
    def __init__(self, ad_id: _Optional[str] = ..., features: _Optional[_Union[Features, _Mapping]] = ...) -> None: ...

class ScoreAdsRequest(_message.Message):
    __slots__ = ("context", "candidates", "model_version", "feature_names")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    context: Features
    candidates: _containers.RepeatedCompositeFieldContainer[AdCandidate]
    model_version: int
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, context: _Optional[_Union[Features, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[AdCandidate, _Mapping]]] = ..., model_version: _Optional[int] = ..., feature_names: _Optional[_Iterable[str]] = ...) -> None: ...

class AdScore(_message.Message):
    __slots__ = ("ad_id", "pctr")
    AD_ID_FIELD_NUMBER: _ClassVar[int]
    PCTR_FIELD_NUMBER: _ClassVar[int]
    ad_id: str
    pctr: float
    def __init__(self, ad_id: _Optional[str] = ..., pctr: _Optional[float] = ...) -> None: ...

class ScoreAdsResponse(_message.Message):
    __slots__ = ("model", "version", "scores")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: int
    scores: _containers.RepeatedCompositeFieldContainer[AdScore]
    def __init__(self, model: _Optional[str] = ..., version: _Optional[int] = ..., scores: _Optional[_Iterable[_Union[AdScore, _Mapping]]] = ...) -> None: ...

class ChatRequest(_message.Message):
    __slots__ = ("message", "session_id", "model_version")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    message: str
    session_id: str
    model_version: int
    def __init__(self, message: _Optional[str] = ..., session_id: _Optional[str] = ..., model_version: _Optional[int] = ...) -> None: ...

class ChatResponse(_message.Message):
    __slots__ = ("intent", "confidence", "reply", "handoff", "truncated", "model", "version", "session_id")
    INTENT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    HANDOFF_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    intent: str
    confidence: float
    reply: str
    handoff: bool
    truncated: bool
    model: str
    version: int
    session_id: str
    def __init__(self, intent: _Optional[str] = ..., confidence: _Optional[float] = ..., reply: _Optional[str] = ..., handoff: bool = ..., truncated: bool = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., session_id: _Optional[str] = ...) -> None: ...

class ItemIds(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("user_id", "history", "k", "exclude", "exclude_purchased")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PURCHASED_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    history: ItemIds
    k: int
    exclude: _containers.RepeatedScalarFieldContainer[str]
    exclude_purchased: bool
    def __init__(self, user_id: _Optional[str] = ..., history: _Optional[_Union[ItemIds, _Mapping]] = ..., k: _Optional[int] = ..., exclude: _Optional[_Iterable[str]] = ..., exclude_purchased: bool = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("item_id", "score", "title")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    score: float
    title: str
    def __init__(self, item_id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "model", "version", "degraded", "history_source", "history_used", "unknown_items")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    HISTORY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_USED_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    model: str
    version: int
    degraded: bool
    history_source: str
    history_used: int
    unknown_items: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., model: _Optional[str] = ..., version: _Optional[int] = ..., degraded: bool = ..., history_source: _Optional[str] = ..., history_used: _Optional[int] = ..., unknown_items: _Optional[_Iterable[str]] = ...) -> None: ...

class EventRequest(_message.Message):
    __slots__ = ("user_id", "item_id", "type", "ts")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    item_id: str
    type: str
    ts: float
    def __init__(self, user_id: _Optional[str] = ..., item_id: _Optional[str] = ..., type: _Optional[str] = ..., ts: _Optional[float] = ...) -> None: ...

class EventResponse(_message.Message):
    __slots__ = ("stored", "degraded", "backend")
    STORED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    degraded: bool
    backend: str
    def __init__(self, stored: bool = ..., degraded: bool = ..., backend: _Optional[str] = ...) -> None: ...

class AvailabilityRequest(_message.Message):
    __slots__ = ("items", "available")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[str]
    available: bool
    def __init__(self, items: _Optional[_Iterable[str]] = ..., available: bool = ...) -> None: ...

class AvailabilityResponse(_message.Message):
    __slots__ = ("acknowledged", "degraded", "backend", "unavailable_items")
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_ITEMS_FIELD_NUMBER: _ClassVar[int]
    acknowledged: bool
    degraded: bool
    backend: str
    unavailable_items: int
    def __init__(self, acknowledged: bool = ..., degraded: bool = ..., backend: _Optional[str] = ..., unavailable_items: _Optional[int] = ...) -> None: ...

class TextList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchCandidate(_message.Message):
    __slots__ = ("product_id", "text", "text_lists")
    class TextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TextListsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TextList
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TextList, _Mapping]] = ...) -> None: ...
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TEXT_LISTS_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    text: _containers.ScalarMap[str, str]
    text_lists: _containers.MessageMap[str, TextList]
    def __init__(self, product_id: _Optional[str] = ..., text: _Optional[_Mapping[str, str]] = ..., text_lists: _Optional[_Mapping[str, TextList]] = ...) -> None: ...

class RankSearchRequest(_message.Message):
    __slots__ = ("query", "candidates", "k", "model_version")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    query: str
    candidates: _containers.RepeatedCompositeFieldContainer[SearchCandidate]
    k: int
    model_version: int
    def __init__(self, query: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[SearchCandidate, _Mapping]]] = ..., k: _Optional[int] = ..., model_version: _Optional[int] = ...) -> None: ...

class RankedProduct(_message.Message):
    __slots__ = ("product_id", "score", "rank", "truncated")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    score: float
    rank: int
    truncated: bool
    def __init__(self, product_id: _Optional[str] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ..., truncated: bool = ...) -> None: ...

class RankSearchResponse(_message.Message):
    __slots__ = ("results", "query_truncated", "model", "version")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    QUERY_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[RankedProduct]
    query_truncated: bool
    model: str
    version: int
    def __init__(self, results: _Optional[_Iterable[_Union[RankedProduct, _Mapping]]] = ..., query_truncated: bool = ..., model: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...
