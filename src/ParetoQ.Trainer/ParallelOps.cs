using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Trainer;

/// <summary>
/// The float attention of <see cref="Ops{T}"/> spread over the GEMM's pool: the forward one item per (sequence, query
/// head), the backward one per (sequence, KV head) (its dk and dv gather the whole group, so no two items write the
/// same row). Each item runs the same generic per-head code the double reference runs.
/// </summary>
internal sealed unsafe class ParallelAttention : IParallelJob
{
    private float* _dout, _q, _k, _v, _probs, _output, _dq, _dk, _dv;
    private int _n, _sequences, _heads, _kvHeads, _headDim, _window;
    private bool _backward;

    [ThreadStatic] private static ParallelAttention? t_job;

    public static void Forward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int n,
        int sequences, int heads, int kvHeads, int headDim, int window, Span<float> output, Span<float> probs)
    {
        var job = t_job ??= new ParallelAttention();
        fixed (float* pq = q, pk = k, pv = v, po = output, pp = probs)
        {
            job._q = pq; job._k = pk; job._v = pv; job._output = po; job._probs = pp;
            (job._n, job._sequences, job._heads, job._kvHeads, job._headDim, job._window, job._backward) =
                (n, sequences, heads, kvHeads, headDim, window, false);
            Gemm.Shared.Run(job, sequences * heads);
        }
    }

    public static void Backward(ReadOnlySpan<float> dout, ReadOnlySpan<float> q, ReadOnlySpan<float> k,
        ReadOnlySpan<float> v, ReadOnlySpan<float> probs, int n, int sequences, int heads, int kvHeads, int headDim,
        int window, Span<float> dq, Span<float> dk, Span<float> dv)
    {
        var job = t_job ??= new ParallelAttention();
        fixed (float* pd = dout, pq = q, pk = k, pv = v, pp = probs, pdq = dq, pdk = dk, pdv = dv)
        {
            job._dout = pd; job._q = pq; job._k = pk; job._v = pv; job._probs = pp;
            job._dq = pdq; job._dk = pdk; job._dv = pdv;
            (job._n, job._sequences, job._heads, job._kvHeads, job._headDim, job._window, job._backward) =
                (n, sequences, heads, kvHeads, headDim, window, true);
            Gemm.Shared.Run(job, sequences * kvHeads);
        }
    }

    /// <summary>Items are (sequence, head) for the forward and (sequence, KV head) for the backward, sequence
    /// major.</summary>
    public void Execute(int begin, int end, int worker)
    {
        int n = _n, qLength = n * _heads * _headDim, kvLength = n * _kvHeads * _headDim, probsLength = _heads * n * n;
        int perSequence = _backward ? _kvHeads : _heads;
        for (int item = begin; item < end; item++)
        {
            int s = item / perSequence, head = item % perSequence;
            var q = new ReadOnlySpan<float>(_q + (long)s * qLength, qLength);
            var k = new ReadOnlySpan<float>(_k + (long)s * kvLength, kvLength);
            var v = new ReadOnlySpan<float>(_v + (long)s * kvLength, kvLength);
            var probs = new Span<float>(_probs + (long)s * probsLength, probsLength);
            if (_backward)
                Ops<float>.AttentionBackwardKvHead(new ReadOnlySpan<float>(_dout + (long)s * qLength, qLength), q, k, v,
                    probs, n, _heads, _kvHeads, _headDim, _window, head,
                    new Span<float>(_dq + (long)s * qLength, qLength), new Span<float>(_dk + (long)s * kvLength,
                        kvLength), new Span<float>(_dv + (long)s * kvLength, kvLength));
            else
                Ops<float>.AttentionHead(q, k, v, n, _heads, _kvHeads, _headDim, _window, head,
                    new Span<float>(_output + (long)s * qLength, qLength), probs);
        }
    }
}

/// <summary>The float cross-entropy of <see cref="Ops{T}"/> over the GEMM's pool, one item per scored position; the
/// losses are summed in position order afterwards, so the result does not depend on the thread count.</summary>
internal sealed unsafe class ParallelCrossEntropy : IParallelJob
{
    private float* _logits, _dlogits;
    private int* _targets;
    private int _vocab;
    private float _weight;
    private double[] _losses = [];

    [ThreadStatic] private static ParallelCrossEntropy? t_job;

    /// <summary>Σ of the scored rows' losses; dlogits rows get (softmax − onehot)·weight (masked rows stay as they
    /// are).</summary>
    public static double Run(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int vocab, float weight,
        Span<float> dlogits)
    {
        var job = t_job ??= new ParallelCrossEntropy();
        if (job._losses.Length < targets.Length) job._losses = new double[targets.Length];
        fixed (float* pl = logits, pd = dlogits)
        fixed (int* pt = targets)
        {
            job._logits = pl; job._dlogits = pd; job._targets = pt;
            (job._vocab, job._weight) = (vocab, weight);
            Gemm.Shared.Run(job, targets.Length);
        }
        double sum = 0;
        for (int t = 0; t < targets.Length; t++) sum += job._losses[t];
        return sum;
    }

    public void Execute(int begin, int end, int worker)
    {
        for (int t = begin; t < end; t++)
        {
            int target = _targets[t];
            _losses[t] = target < 0 ? 0 : Ops<float>.CrossEntropyRow(
                new ReadOnlySpan<float>(_logits + (long)t * _vocab, _vocab), target, _weight,
                new Span<float>(_dlogits + (long)t * _vocab, _vocab));
        }
    }
}
