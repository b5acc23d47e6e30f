namespace ParetoQ.Runtime.Generation;

/// <summary>Sampling settings. Temperature 0 means greedy; 0 for TopK and 1 for TopP and 0 for MinP switch those
/// filters off.</summary>
public sealed record SamplerOptions
{
    public float Temperature { get; init; } = 0.8f;
    public int TopK { get; init; } = 40;
    public float TopP { get; init; } = 0.95f;
    public float MinP { get; init; } = 0.05f;
    /// <summary>CTRL-style penalty on tokens seen in the last <see cref="RepeatWindow"/> tokens; 1 = off.</summary>
    public float RepeatPenalty { get; init; } = 1f;
    public int RepeatWindow { get; init; } = 64;
    /// <summary>The draw's seed: the same seed gives the same text. Unset, each options object gets a random one, as
    /// the CLI and llama.cpp do, so a library caller does not get the same text on every call.</summary>
    public ulong Seed { get; init; } = RandomSeed();

    /// <summary>A seed for a caller that was given none: the one source of random seeds (CLI, server, chat
    /// client).</summary>
    public static ulong RandomSeed() => (ulong)Random.Shared.NextInt64();

    public static SamplerOptions Greedy => new() { Temperature = 0, TopK = 0, TopP = 1, MinP = 0, RepeatPenalty = 1 };

    /// <summary>Throws <see cref="ArgumentException"/> naming the first setting out of range.</summary>
    public void Validate()
    {
        if (!float.IsFinite(Temperature)
            || Temperature < 0) throw new ArgumentException($"temperature {Temperature} must be ≥ 0");
        if (TopK < 0) throw new ArgumentException($"top-k {TopK} must be ≥ 0");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentException($"top-p {TopP} must be in (0, 1]");
        if (!(MinP >= 0 && MinP <= 1)) throw new ArgumentException($"min-p {MinP} must be in [0, 1]");
        if (!float.IsFinite(RepeatPenalty)
            || RepeatPenalty <= 0) throw new ArgumentException($"repeat penalty {RepeatPenalty} must be > 0");
        if (RepeatWindow < 0) throw new ArgumentException($"repeat window {RepeatWindow} must be ≥ 0");
    }
}

/// <summary>
/// Picks the next token from logits: repetition penalty, then greedy or top-k → temperature → softmax → top-p → min-p →
/// a draw from a seeded PCG32 stream (the same seed gives the same tokens on every platform). Allocates only in the
/// constructor.
/// </summary>
public sealed class Sampler
{
    private readonly SamplerOptions _o;
    private readonly float[] _logits;   // (vocab) penalized copy
    private readonly float[] _keys;     // (vocab) candidate logits, sorted descending
    private readonly int[] _ids;        // (vocab) candidate token ids, same order
    private readonly bool[] _penalized; // (vocab) scratch, all false between calls
    private Pcg32 _random;

    public Sampler(int vocabSize, SamplerOptions options)
    {
        options.Validate();
        _o = options;
        _logits = new float[vocabSize];
        _keys = new float[vocabSize];
        _ids = new int[vocabSize];
        _penalized = new bool[vocabSize];
        _random = Pcg32.FromSeed(options.Seed);
    }

    /// <param name="recent">Tokens generated or fed so far; the last RepeatWindow of them are penalized.</param>
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> recent)
    {
        if (logits.Length != _logits.Length) throw new ArgumentException($"{logits.Length} logits for a vocabulary of {_logits.Length}", nameof(logits));
        logits.CopyTo(_logits);
        if (_o.RepeatPenalty != 1)
        {
            var window = recent[Math.Max(0, recent.Length - _o.RepeatWindow)..];
            // Once per distinct token, however often it occurs (as llama.cpp does).
            foreach (int t in window)
            {
                if ((uint)t >= (uint)_logits.Length || _penalized[t]) continue;
                _penalized[t] = true;
                ref float l = ref _logits[t];
                l = l > 0 ? l / _o.RepeatPenalty : l * _o.RepeatPenalty;
            }
            foreach (int t in window) if ((uint)t < (uint)_logits.Length) _penalized[t] = false;
        }
        if (_o.Temperature == 0) return ArgMax(_logits);

        int n = SelectCandidates();
        // softmax over the candidates (sorted descending, so the first is the max)
        float max = _keys[0], sum = 0;
        for (int i = 0; i < n; i++) sum += _keys[i] = MathF.Exp((_keys[i] - max) / _o.Temperature);
        for (int i = 0; i < n; i++) _keys[i] /= sum;

        int keep = n;
        if (_o.TopP < 1)
        {
            float cumulative = 0;
            for (int i = 0; i < n; i++)
            {
                cumulative += _keys[i];
                if (cumulative >= _o.TopP) { keep = i + 1; break; }
            }
        }
        if (_o.MinP > 0)
        {
            float threshold = _o.MinP * _keys[0];
            int i = 1;
            while (i < keep && _keys[i] >= threshold) i++;
            keep = i;
        }

        float total = 0;
        for (int i = 0; i < keep; i++) total += _keys[i];
        float r = _random.NextFloat() * total;
        for (int i = 0; i < keep; i++)
        {
            r -= _keys[i];
            if (r < 0) return _ids[i];
        }
        return _ids[keep - 1];
    }

    // Fills _keys/_ids with the candidates sorted by logit, descending: the top-k when set, else the whole vocabulary.
    private int SelectCandidates()
    {
        int vocab = _logits.Length;
        int k = _o.TopK > 0 ? Math.Min(_o.TopK, vocab) : vocab;
        if (k == vocab)
        {
            for (int i = 0; i < vocab; i++) { _keys[i] = -_logits[i]; _ids[i] = i; }
            _keys.AsSpan(0, vocab).Sort(_ids.AsSpan(0, vocab));
            for (int i = 0; i < vocab; i++) _keys[i] = -_keys[i];
            return vocab;
        }
        // Min-heap of the k largest (heap[0] is the smallest kept), then sort those k.
        for (int i = 0; i < vocab; i++)
        {
            float v = _logits[i];
            if (i < k)
            {
                _keys[i] = v;
                _ids[i] = i;
                SiftUp(i);
            }
            else if (v > _keys[0])
            {
                _keys[0] = v;
                _ids[0] = i;
                SiftDown(0, k);
            }
        }
        for (int i = 0; i < k; i++) _keys[i] = -_keys[i];
        _keys.AsSpan(0, k).Sort(_ids.AsSpan(0, k));
        for (int i = 0; i < k; i++) _keys[i] = -_keys[i];
        return k;
    }

    private void SiftUp(int i)
    {
        while (i > 0)
        {
            int parent = (i - 1) / 2;
            if (_keys[parent] <= _keys[i]) return;
            Swap(i, parent);
            i = parent;
        }
    }

    private void SiftDown(int i, int n)
    {
        while (true)
        {
            int smallest = i, l = 2 * i + 1, r = l + 1;
            if (l < n && _keys[l] < _keys[smallest]) smallest = l;
            if (r < n && _keys[r] < _keys[smallest]) smallest = r;
            if (smallest == i) return;
            Swap(i, smallest);
            i = smallest;
        }
    }

    private void Swap(int a, int b)
    {
        (_keys[a], _keys[b]) = (_keys[b], _keys[a]);
        (_ids[a], _ids[b]) = (_ids[b], _ids[a]);
    }

    /// <summary>Index of the largest logit; the lowest index wins ties.</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
}
