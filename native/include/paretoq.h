/*
 * paretoq.h: the C ABI of libparetoq, the ParetoQ.Runtime engine as a shared library.
 *
 * One model file (.pq) is loaded once with pq_model_load and shared; each conversation runs in its own pq_context.
 *
 *   pq_model *model; pq_context *ctx;
 *   pq_model_params mp = pq_model_default_params();
 *   if (pq_model_load("model.pq", &mp, &model) != PQ_OK) { fprintf(stderr, "%s\n", pq_last_error()); ... }
 *   pq_context_params cp = pq_context_default_params();
 *   pq_context_new(model, &cp, &ctx);
 *   pq_sampler_params sp = pq_sampler_default_params();
 *   pq_generate(ctx, "Once upon a time", -1, &sp, 64, on_text, user_data, NULL);
 *   pq_context_free(ctx); pq_model_free(model);
 *
 * Conventions
 *   - Functions return pq_status (PQ_OK = 0, errors < 0) unless stated otherwise. On an error, pq_last_error() gives a
 *     message naming the problem, for the calling thread. No call crashes on bad input: null or freed handles, null or
 *     short buffers, invalid UTF-8, a missing or corrupt file and out-of-range parameters all return errors.
 *   - Strings are UTF-8. A text argument comes with a byte length; a length of -1 means NUL-terminated, and a NULL
 *     text is accepted only with length 0.
 *   - Buffers are owned by the caller. Functions that fill a buffer return the count written, or, when the buffer is
 *     too small, minus the count needed (nothing useful is written then); PQ_SIZE_ERROR signals an error.
 *   - Parameter structs start with their own size: pass them as returned by the *_default_params() functions, which
 *     set it (a struct of another size is refused, naming both sizes). A NULL params pointer means the defaults.
 *
 * Thread safety
 *   - A pq_model is immutable after loading: any number of threads may use it at once (tokenize, detokenize, info,
 *     pq_context_new). pq_model_free may be called while contexts are alive: the handle becomes invalid at once, and
 *     the weights stay mapped until the last of its contexts is freed.
 *   - A pq_context belongs to one thread at a time: calls on the same context must not overlap (an overlapping call
 *     is refused with PQ_ERR_BUSY, never run concurrently; so is a call into the context from its own pq_generate
 *     callback). pq_context_free waits for a call running on another thread; called from the context's own callback,
 *     it invalidates the handle at once and the context is released when the running call returns. Different
 *     contexts run in parallel, each on its own worker threads (pq_context_params.threads).
 *   - pq_last_error is per thread.
 */
#ifndef PARETOQ_H
#define PARETOQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define PQ_API __declspec(dllimport)
#else
#define PQ_API __attribute__((visibility("default")))
#endif

/* Bumped whenever a signature or a struct layout below changes incompatibly. */
#define PQ_ABI_VERSION 1

typedef int32_t pq_token;
typedef struct pq_model pq_model;
typedef struct pq_context pq_context;

typedef enum pq_status {
    PQ_OK = 0,
    PQ_ERR_INVALID_ARGUMENT = -1,  /* a null pointer, an out-of-range value, a struct of unknown size */
    PQ_ERR_INVALID_HANDLE = -2,    /* a null, freed or foreign model/context handle */
    PQ_ERR_IO = -3,                /* the file is missing or unreadable */
    PQ_ERR_MODEL_FORMAT = -4,      /* the file is not a valid .pq model (corrupt, truncated, unsupported) */
    PQ_ERR_TOKENIZER = -5,         /* invalid UTF-8 text, or a token id outside the vocabulary */
    PQ_ERR_CONTEXT_FULL = -6,      /* the tokens do not fit in the context's remaining length */
    PQ_ERR_BUSY = -7,              /* another call on the same context is running */
    PQ_ERR_OUT_OF_MEMORY = -8,
    PQ_ERR_UNSUPPORTED = -9,       /* e.g. a kernel path this CPU lacks */
    PQ_ERR_INTERNAL = -100         /* a bug: the message says where */
} pq_status;

/* Returned by the buffer-filling functions (pq_tokenize, pq_detokenize) on an error. */
#define PQ_SIZE_ERROR INT32_MIN

typedef enum pq_kv_type { PQ_KV_INT8 = 0, PQ_KV_F32 = 1 } pq_kv_type;

typedef enum pq_stop_reason {
    PQ_STOP_MAX_TOKENS = 0, PQ_STOP_EOS = 1, PQ_STOP_CONTEXT_FULL = 3, PQ_STOP_CANCELLED = 4
} pq_stop_reason;

typedef struct pq_model_params {
    uint32_t size;              /* sizeof(pq_model_params) */
    int32_t verify_checksums;   /* 1 (default): hash every tensor at load; 0: trust the file (faster start) */
} pq_model_params;

typedef struct pq_context_params {
    uint32_t size;              /* sizeof(pq_context_params) */
    int32_t threads;            /* worker threads, the caller included: 0 (default) = one per core the process may use,
                                   else 1 up to that many */
    int32_t context_length;     /* 0 (default) = min(model maximum, 4096) */
    int32_t kv_type;            /* pq_kv_type; PQ_KV_INT8 (default) */
    int32_t exact;              /* 1: fp32 scalar reference kernels (slow; accuracy checks); 0 (default) */
} pq_context_params;

typedef struct pq_sampler_params {
    uint32_t size;              /* sizeof(pq_sampler_params) */
    float temperature;          /* 0 = greedy; default 0.8 */
    int32_t top_k;              /* 0 = off; default 40 */
    float top_p;                /* (0, 1]; 1 = off; default 0.95 */
    float min_p;                /* [0, 1]; 0 = off; default 0.05 */
    float repeat_penalty;       /* > 0; 1 = off (the default, as llama.cpp's) */
    int32_t repeat_last_n;      /* tokens the penalty looks back over; default 64 */
    uint64_t seed;              /* the same seed and inputs give the same tokens on every platform */
} pq_sampler_params;

typedef struct pq_model_info {
    uint32_t size;              /* set by the caller: sizeof(pq_model_info) */
    int32_t vocab_size;
    int32_t max_context;        /* the model's longest context */
    int32_t layers;             /* layers run per token (shared layers counted per use) */
    int32_t hidden_size;
    int32_t bos_id;             /* -1 when the vocabulary has none */
    int32_t eos_id;             /* the first end-of-sequence id, -1 when none */
    int32_t reserved;
    int64_t file_bytes;
    int64_t parameters;         /* weights, counting shared layers once */
    char architecture[32];      /* "mobilellm" or "mobilellm-pro", NUL-terminated */
    char bits[16];              /* the bit width as users name it: "2", "1.58", ... */
} pq_model_info;

typedef struct pq_generation_stats {
    uint32_t size;              /* set by the caller: sizeof(pq_generation_stats) */
    int32_t prompt_tokens;
    int32_t generated_tokens;
    int32_t stop_reason;        /* pq_stop_reason */
    double prefill_tokens_per_second;
    double decode_tokens_per_second;
} pq_generation_stats;

/*
 * Receives generated text as soon as it is final (never half a UTF-8 character). text is not NUL-terminated and is
 * valid only during the call. Return 0 to continue, anything else to stop (stop_reason PQ_STOP_CANCELLED).
 */
typedef int32_t (*pq_text_callback)(const char *text, int32_t length, void *user_data);

PQ_API uint32_t pq_abi_version(void);
/* The library's version and the kernel path it runs, e.g. "ParetoQ.Runtime 0.6.0 (abi 1, kernels avx512gfni)"; a static
 * string. On x86-64 the path shows which build variant the loader picked (avx512* only in the x86-64-v4 one). */
PQ_API const char *pq_version_string(void);
/* The calling thread's last error message; "" when none. Valid until this thread's next failing call or its exit. */
PQ_API const char *pq_last_error(void);

PQ_API pq_model_params pq_model_default_params(void);
PQ_API pq_status pq_model_load(const char *path, const pq_model_params *params, pq_model **out_model);
/* Null is accepted and ignored. */
PQ_API void pq_model_free(pq_model *model);
PQ_API pq_status pq_model_get_info(const pq_model *model, pq_model_info *out_info);

PQ_API pq_context_params pq_context_default_params(void);
PQ_API pq_status pq_context_new(pq_model *model, const pq_context_params *params, pq_context **out_context);
PQ_API void pq_context_free(pq_context *context);
/* Forgets every token fed so far. */
PQ_API pq_status pq_context_reset(pq_context *context);
/* Tokens in the context so far, or a negative pq_status. */
PQ_API int32_t pq_context_position(pq_context *context);
/* The context length this context was created with, or a negative pq_status. */
PQ_API int32_t pq_context_length(pq_context *context);

/* Text to token ids; add_bos != 0 starts with the BOS token. Returns the count, -needed, or PQ_SIZE_ERROR. */
PQ_API int32_t pq_tokenize(const pq_model *model, const char *text, int32_t text_length, int32_t add_bos,
                           pq_token *tokens, int32_t capacity);
/* Token ids to UTF-8 text plus a terminating NUL (control tokens produce nothing, invalid UTF-8 becomes U+FFFD).
 * Returns the text's length without the NUL, -(length + 1) when capacity is too small, or PQ_SIZE_ERROR. */
PQ_API int32_t pq_detokenize(const pq_model *model, const pq_token *tokens, int32_t count, char *text, int32_t capacity);

/* Feeds tokens (a prompt, or one sampled token) after those already in the context. */
PQ_API pq_status pq_decode(pq_context *context, const pq_token *tokens, int32_t count);
/* The logits after the last fed token: vocab_size floats, owned by the context and valid until its next call.
 * Returns NULL on an error (or before any token was fed); *out_count (optional) receives vocab_size. */
PQ_API const float *pq_get_logits(pq_context *context, int32_t *out_count);

PQ_API pq_sampler_params pq_sampler_default_params(void);
/* Picks the next token from the current logits, penalizing repeats of the tokens fed so far. The context keeps the
 * random stream between calls; new params (or a new seed) restart it. Returns a token id, or a negative pq_status. */
PQ_API pq_token pq_sample(pq_context *context, const pq_sampler_params *params);

/* Tokenizes the prompt (BOS first when the context is empty), feeds it, then samples and feeds up to max_tokens tokens,
 * streaming their text to callback (may be NULL), until EOS, max_tokens, a full context or the callback's stop.
 * stats (optional) receives counts and speeds. The context keeps everything, so a later call continues it. */
PQ_API pq_status pq_generate(pq_context *context, const char *prompt, int32_t prompt_length, const pq_sampler_params *params,
                             int32_t max_tokens, pq_text_callback callback, void *user_data, pq_generation_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* PARETOQ_H */
