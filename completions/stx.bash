# bash completion for stx, the streamtx command-line tool.
# Installed as share/bash-completion/completions/stx; to try it from a
# source tree: source completions/stx.bash
#
# Commands, subcommands and options come from this file; stream and group
# names from the server (stx streams --json), so they complete only when
# $STX_URL or --url reaches one.

_stx_streams_json()
{
    local url=() i
    for ((i = 1; i < COMP_CWORD; i++)); do
        if [[ ${COMP_WORDS[i]} == --url && $((i + 1)) -lt COMP_CWORD ]]; then
            url=(--url "${COMP_WORDS[i + 1]}")
        elif [[ ${COMP_WORDS[i]} == --url=* ]]; then
            url=("${COMP_WORDS[i]}")
        fi
    done
    timeout 2 stx "${url[@]}" streams --json 2>/dev/null
}

# Stream names (field "stream") or the groups of stream $1.
_stx_names()
{
    local json
    json=$(_stx_streams_json) || return
    if [[ -z $1 ]]; then
        grep -o '"stream":"[^"]*"' <<<"$json" | cut -d'"' -f4 | sort -u
    else
        grep -o '"stream":"[^"]*","group":"[^"]*"' <<<"$json" |
            awk -F'"' -v s="$1" '$4 == s { print $8 }'
    fi
}

_stx()
{
    local cur prev words cword
    if declare -F _init_completion >/dev/null; then
        _init_completion -n = || return
    else
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
    fi

    local global="--url --json --help --version --tls --tls-ca-file --tls-ca-dir
        --tls-cert-file --tls-key-file --tls-server-name --tls-insecure"
    local commands="streams info produce tail replay pending dlq state reset group trim
        health version help create members"
    local positions="beginning end - \$ 0 1h 30m 1d"

    case $prev in
    --url) COMPREPLY=($(compgen -W "redis:// rediss:// unix://" -- "$cur")); return ;;
    --tls-ca-file | --tls-cert-file | --tls-key-file) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --tls-ca-dir) COMPREPLY=($(compgen -d -- "$cur")); return ;;
    --to | --from) COMPREPLY=($(compgen -W "$positions" -- "$cur")); return ;;
    --limit | --count | --block-ms | --maxlen | --max-age | --tls-server-name | \
        --idempotency-key | --key | --partitions) return ;;
    esac

    # The command and its positional words so far (options and their values
    # left out).
    local cmd="" args=() i w
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        case $w in
        --url | --tls-ca-file | --tls-ca-dir | --tls-cert-file | --tls-key-file | \
            --tls-server-name | --to | --from | --limit | --count | --block-ms | --maxlen | \
            --max-age | --idempotency-key | --key | --partitions) ((i++)) ;;
        -*) ;;
        *) if [[ -z $cmd ]]; then cmd=$w; else args+=("$w"); fi ;;
        esac
    done

    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$commands $global" -- "$cur"))
        return
    fi

    local opts=""
    case $cmd in
    tail) opts="--from --limit --count --block-ms --wait" ;;
    replay) opts="--from --to --limit" ;;
    pending) opts="--limit" ;;
    dlq) [[ ${args[0]} == list ]] && opts="--limit" ;;
    reset) opts="--to --clear-state --reemit --force --pg --yes" ;;
    group) opts="--yes" ;;
    trim) opts="--safe --maxlen --max-age" ;;
    produce) opts="--idempotency-key --maxlen --key" ;;
    create) opts="--partitions --grow" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts --json --help --url" -- "$cur"))
        return
    fi

    # Which positional word is being completed, after any subcommand.
    local n=${#args[@]} sub=""
    case $cmd in
    dlq | state | group)
        if ((n == 0)); then
            case $cmd in
            dlq) COMPREPLY=($(compgen -W "list redrive" -- "$cur")) ;;
            state) COMPREPLY=($(compgen -W "get dump" -- "$cur")) ;;
            group) COMPREPLY=($(compgen -W "delete" -- "$cur")) ;;
            esac
            return
        fi
        sub=${args[0]}
        args=("${args[@]:1}")
        n=${#args[@]}
        ;;
    help)
        ((n == 0)) && COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        return
        ;;
    streams | health | version) return ;;
    esac

    if ((n == 0)); then
        COMPREPLY=($(compgen -W "$(_stx_names)" -- "$cur"))
    elif ((n == 1)); then
        case $cmd in
        pending | dlq | state | reset | group)
            COMPREPLY=($(compgen -W "$(_stx_names "${args[0]}")" -- "$cur")) ;;
        esac
    fi
}

complete -F _stx stx
