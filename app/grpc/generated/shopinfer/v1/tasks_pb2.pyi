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
